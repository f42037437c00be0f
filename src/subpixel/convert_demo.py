"""``subpixel convert-demo``: convert a ConvTranspose2d, print the max difference and the time of both forms."""

from __future__ import annotations

import argparse
import time

import torch

from subpixel.convert import from_conv_transpose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in-channels", type=int, default=64)
    parser.add_argument("--out-channels", type=int, default=32)
    parser.add_argument("--kernel-size", type=int, default=4)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--padding", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    deconv = torch.nn.ConvTranspose2d(
        args.in_channels, args.out_channels, args.kernel_size, stride=args.stride, padding=args.padding
    )
    layer = from_conv_transpose(deconv)
    print(f"ConvTranspose2d: {deconv}\nSubPixelConv2d:  {layer}")
    x64 = torch.randn(2, args.in_channels, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        err64 = (layer.double()(x64) - deconv.double()(x64)).abs().max().item()
        layer.float(), deconv.float()
        x = torch.randn(args.batch, args.in_channels, args.size, args.size)
        err32 = (layer(x) - deconv(x)).abs().max().item()
        t_ref = _median_ms(lambda: deconv(x), args.repeats)
        t_new = _median_ms(lambda: layer(x), args.repeats)
    print(f"max |difference|: {err64:.2e} (float64), {err32:.2e} (float32)")
    print(
        f"median time on {tuple(x.shape)} with {torch.get_num_threads()} threads: ConvTranspose2d {t_ref:.2f} ms, "
        f"SubPixelConv2d {t_new:.2f} ms, speed-up {t_ref / t_new:.2f}x"
    )
    return 0
