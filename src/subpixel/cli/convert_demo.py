"""``subpixel convert-demo``: convert a ConvTranspose2d, print the max difference and the time of both forms."""

from __future__ import annotations

import argparse
import statistics

import torch

from subpixel.cli._args import non_negative_int, positive_int
from subpixel.convert import from_conv_transpose
from subpixel.errors import SubpixelError
from subpixel.timing import interleaved

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``subpixel convert-demo`` (the ConvTranspose2d to convert, the timed input)."""
    parser.add_argument("--in-channels", type=positive_int, default=64)
    parser.add_argument("--out-channels", type=positive_int, default=32)
    parser.add_argument("--kernel-size", type=positive_int, default=4)
    parser.add_argument("--stride", type=positive_int, default=2)
    parser.add_argument("--padding", type=non_negative_int, default=1)
    parser.add_argument("--size", type=positive_int, default=64, help="input height and width")
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--repeats", type=positive_int, default=20)


def run(args: argparse.Namespace) -> int:
    """Convert, compare in float64 and float32, time both (interleaved medians); returns the exit code."""
    torch.manual_seed(0)
    deconv = torch.nn.ConvTranspose2d(
        args.in_channels, args.out_channels, args.kernel_size, stride=args.stride, padding=args.padding
    )
    layer = from_conv_transpose(deconv)
    smallest = min(9, 11, args.size)  # output size per axis: (n - 1)·stride - 2·padding + kernel_size
    if (smallest - 1) * args.stride - 2 * args.padding + args.kernel_size < 1:
        raise SubpixelError(
            f"--padding {args.padding} is too large for --kernel-size {args.kernel_size}, --stride {args.stride} "
            f"and an input of {smallest} pixels: the output would be empty"
        )
    print(f"ConvTranspose2d: {deconv}\nSubPixelConv2d:  {layer}")
    x64 = torch.randn(2, args.in_channels, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        err64 = (layer.double()(x64) - deconv.double()(x64)).abs().max().item()
        layer.float(), deconv.float()
        x = torch.randn(args.batch, args.in_channels, args.size, args.size)
        err32 = (layer(x) - deconv(x)).abs().max().item()
        plan = layer.plan(x)  # chosen (timed) before the comparison
        times = interleaved(
            [lambda: deconv(x), lambda: layer(x)], min_runs=args.repeats, warmup=1, alternate=True
        )
        t_ref, t_new = (1e3 * statistics.median(ts) for ts in times)
    print(f"max |difference|: {err64:.2e} (float64), {err32:.2e} (float32)")
    print(
        f"median time on {tuple(x.shape)} with {torch.get_num_threads()} threads: ConvTranspose2d {t_ref:.2f} ms, "
        f"SubPixelConv2d {t_new:.2f} ms, speed-up {t_ref / t_new:.2f}x"
    )
    if plan is not None:
        print(f"algorithm: {plan.algorithm} ({plan.reason})")
    return 0
