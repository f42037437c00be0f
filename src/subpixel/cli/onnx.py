"""``subpixel onnx``: rewrite ONNX graphs (ConvTranspose <-> Conv + DepthToSpace) and export layers.

Examples (shell)::

    subpixel onnx rewrite model.onnx -o model_subpixel.onnx
    subpixel onnx rewrite model_subpixel.onnx -o back.onnx --reverse
    subpixel onnx rewrite model.onnx -o out.onnx --input-shape input=1x3x256x256 --repeats 50
    subpixel onnx export -o espcn_x3.onnx --pretrained 3 --size 64x64
    subpixel onnx export -o up.onnx --layer 2d --in-channels 64 --out-channels 32 --kernel-size 4 --stride 2 \\
        --padding 1 --size 16x16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from subpixel.cli._args import positive_int
from subpixel.errors import SubpixelError

__all__ = ["add_arguments", "run"]


def _shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 0:
        raise argparse.ArgumentTypeError(f"expected NAME=D1xD2x.. (e.g. input=1x3x64x64), got {text!r}")
    return name, shape


def _size(text: str) -> tuple[int, ...]:
    try:
        size = tuple(int(d) for d in text.lower().replace(",", "x").split("x"))
    except ValueError:
        size = ()
    if not size or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected spatial sizes like 64 or 64x64 or 8x16x16, got {text!r}")
    return size


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``rewrite`` and ``export`` sub-commands."""
    sub = parser.add_subparsers(dest="onnx_command", metavar="{rewrite,export}")
    sub.required = True
    rw = sub.add_parser(
        "rewrite",
        help="replace ConvTranspose by Conv + DepthToSpace + Slice (or back, with --reverse)",
        description="Rewrite every ConvTranspose of an ONNX graph into an exact LR-space Conv + periodic shuffle "
        "(DepthToSpace, or Reshape/Transpose) + Slice, then verify both graphs in ONNX Runtime. The input file "
        "is only read; the output is written atomically.",
    )
    rw.add_argument("input", type=Path, help="the ONNX model to read")
    rw.add_argument("-o", "--output", type=Path, required=True, help="where to write the rewritten model")
    rw.add_argument(
        "--reverse",
        action="store_true",
        help="replace Conv -> DepthToSpace [-> Slice] chains by ConvTranspose where provably equal",
    )
    rw.add_argument("--no-verify", action="store_true", help="skip running both graphs in ONNX Runtime")
    rw.add_argument(
        "--input-initializers-are-constant",
        action="store_true",
        help="treat initializers that are also graph inputs (old exports) as constant weights; ONNX lets such "
        "inputs be fed at run time, which would bypass the rewritten weights",
    )
    rw.add_argument(
        "--input-shape",
        type=_shape,
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="shape for an input with dynamic dims, e.g. input=1x3x64x64 (repeatable); other dynamic dims "
        "are 1 (batch) or 32",
    )
    rw.add_argument("--repeats", type=positive_int, default=10, help="timed runs of each graph (default 10)")
    rw.add_argument(
        "--threads", type=positive_int, default=1, help="ONNX Runtime threads for verification (default 1)"
    )
    rw.add_argument(
        "--tolerance",
        type=_non_negative,
        default=1e-4,
        help="fail (exit 1) if an output's max abs error exceeds this times max(1, max |output|) (default 1e-4)",
    )
    rw.add_argument("--force", action="store_true", help="overwrite the output file if it exists")

    ex = sub.add_parser(
        "export",
        help="export a SubPixelConv layer or a bundled ESPCN model to ONNX",
        description="Export to ONNX (opset >= 13) with DepthToSpace for 2-D shuffles, and compare ONNX Runtime "
        "with PyTorch on a random input.",
    )
    ex.add_argument("-o", "--output", type=Path, required=True, help="where to write the model")
    what = ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--pretrained", type=int, metavar="SCALE", help="the bundled ESPCN weights for SCALE")
    what.add_argument("--weights", type=Path, help="ESPCN weights (.safetensors with its .json config)")
    what.add_argument("--layer", choices=["1d", "2d", "3d"], help="a randomly initialised SubPixelConv layer")
    ex.add_argument(
        "--size", type=_size, default=None, help="spatial input size, e.g. 64x64 (default 32 per axis)"
    )
    ex.add_argument(
        "--batch", type=positive_int, default=1, help="batch size of the exported graph (default 1)"
    )
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 13, default 18)")
    ex.add_argument(
        "--dynamic",
        action="store_true",
        help="dynamic batch and spatial sizes (shuffles then stay Reshape/Transpose instead of DepthToSpace)",
    )
    for name, default in (("in-channels", 8), ("out-channels", 4), ("kernel-size", 4), ("stride", 2)):
        ex.add_argument(
            f"--{name}",
            type=int,
            default=default,
            help=f"--layer: {name.replace('-', ' ')} (default {default})",
        )
    for name in ("padding", "output-padding", "dilation"):
        ex.add_argument(
            f"--{name}", type=int, default=1 if name == "dilation" else 0, help=f"--layer: {name}"
        )
    ex.add_argument("--groups", type=int, default=1, help="--layer: groups")
    ex.add_argument(
        "--order", choices=["crd", "dcr"], default="crd", help="--layer: channel order of the weight"
    )
    ex.add_argument("--force", action="store_true", help="overwrite the output file if it exists")


def _check_output(args: argparse.Namespace) -> str | None:
    """The rule every command follows (:func:`subpixel.cli._outputs.check_output`), and an ``.onnx`` name."""
    from subpixel.cli._outputs import check_output

    out = args.output
    inputs = [args.input] if getattr(args, "input", None) is not None else []
    try:
        check_output(out, option="-o", inputs=inputs, force=args.force)
    except SubpixelError as exc:
        return str(exc)
    if out.suffix.lower() != ".onnx":
        return f"output {str(out)!r} should end in .onnx"
    return None


def _rewrite(args: argparse.Namespace) -> int:
    from subpixel.onnx._graph import OnnxInputError, load_model, save_model_atomic
    from subpixel.onnx.reverse import subpixel_to_conv_transpose
    from subpixel.onnx.rewrite import conv_transpose_to_subpixel
    from subpixel.onnx.verify import compare_models

    problem = _check_output(args)
    if problem:
        print(f"subpixel onnx rewrite: {problem}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.input)
        fn = subpixel_to_conv_transpose if args.reverse else conv_transpose_to_subpixel
        rewritten, report = fn(model, input_initializers_are_constant=args.input_initializers_are_constant)
    except OnnxInputError as exc:
        print(f"subpixel onnx rewrite: {exc}", file=sys.stderr)
        return 2
    print(report)
    status = 0
    if not args.no_verify:
        try:
            cmp = compare_models(
                model, rewritten, shapes=dict(args.input_shape), repeats=args.repeats, threads=args.threads
            )
        except SubpixelError as exc:
            print(f"subpixel onnx rewrite: cannot verify: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # ONNX Runtime cannot run a graph (no kernel for a type, custom op, ...)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            print(
                f"subpixel onnx rewrite: verification skipped, ONNX Runtime cannot run the graphs: {reason}",
                file=sys.stderr,
            )
        else:
            print(cmp)
            bad = [
                name
                for name, err in cmp.max_abs_error.items()
                if err > args.tolerance * max(1.0, cmp.max_abs_value[name])
            ]
            if bad:
                print(
                    f"subpixel onnx rewrite: outputs {bad} differ by more than the tolerance {args.tolerance:g}; "
                    "the output is written anyway for inspection",
                    file=sys.stderr,
                )
                status = 1
    try:
        save_model_atomic(rewritten, args.output)
    except OnnxInputError as exc:
        print(f"subpixel onnx rewrite: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return status


def _export(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from subpixel.onnx._graph import OnnxInputError
    from subpixel.onnx.export import export, run_onnx

    problem = _check_output(args)
    if problem:
        print(f"subpixel onnx export: {problem}", file=sys.stderr)
        return 2
    try:
        if args.layer:
            import subpixel

            n = int(args.layer[0])
            cls = {1: subpixel.SubPixelConv1d, 2: subpixel.SubPixelConv2d, 3: subpixel.SubPixelConv3d}[n]
            try:
                module = cls(
                    args.in_channels,
                    args.out_channels,
                    args.kernel_size,
                    stride=args.stride,
                    padding=args.padding,
                    output_padding=args.output_padding,
                    groups=args.groups,
                    dilation=args.dilation,
                    order=args.order,
                )
            except ValueError as exc:  # the constructor's checks of the numbers given on the command line
                raise SubpixelError(str(exc)) from exc
            channels = args.in_channels
        else:
            from subpixel.sr import models

            if args.pretrained is not None:
                module = models.pretrained(args.pretrained)
            else:
                module = models.load(args.weights)
            n, channels = 2, module.config.in_channels
        size = args.size or (32,) * n
        if len(size) != n:
            raise SubpixelError(
                f"--size must have {n} entries for a {n}-D model, got {'x'.join(map(str, size))}"
            )
        module = module.eval()
        x = torch.randn(args.batch, channels, *size)
        model = export(
            module,
            x,
            None,
            opset=args.opset,
            input_names=["input"],
            output_names=["output"],
            dynamic=args.dynamic,
        )
        with torch.no_grad():
            expected = module(x).numpy()
        got = run_onnx(model, x)[0]
    except (SubpixelError, OnnxInputError) as exc:
        print(f"subpixel onnx export: {exc}", file=sys.stderr)
        return 2
    from subpixel.onnx._graph import save_model_atomic

    try:
        save_model_atomic(model, args.output)
    except OnnxInputError as exc:
        print(f"subpixel onnx export: {exc}", file=sys.stderr)
        return 2
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    err = float(np.abs(got - expected).max())
    print(f"nodes: {', '.join(f'{k} x{v}' for k, v in ops.items())}")
    print(f"ONNX Runtime vs PyTorch on a random {tuple(x.shape)} input: max abs error {err:.3g}")
    print(f"wrote {args.output}")
    return 0 if err <= 1e-4 * max(1.0, float(np.abs(expected).max())) else 1


def run(args: argparse.Namespace) -> int:
    """Run ``subpixel onnx rewrite`` or ``subpixel onnx export``; returns the exit code."""
    if args.onnx_command == "rewrite":
        return _rewrite(args)
    return _export(args)
