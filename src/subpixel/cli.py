"""The ``subpixel`` command line.

Each sub-command lives in its own module, which provides two functions:

* ``add_arguments(parser: argparse.ArgumentParser) -> None``
* ``run(args: argparse.Namespace) -> int`` (the exit code)

Modules are imported only when their command is chosen, so ``subpixel --help`` stays fast and a command
whose optional dependencies are missing does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: command name -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("subpixel.demo", "upscale a sample image with the bundled weights and report PSNR"),
    "convert-demo": (
        "subpixel.convert_demo",
        "show that ConvTranspose and SubPixelConv agree, and time both",
    ),
    "train": ("subpixel.sr.train", "train an ESPCN super-resolution model"),
    "evaluate": ("subpixel.sr.evaluate", "evaluate SR weights by the standard protocol (Y-PSNR/SSIM)"),
    "upscale": ("subpixel.upscale.cli", "upscale images, folders or videos"),
    "study": ("subpixel.study.cli", "LR-space vs HR-space networks at equal compute"),
    "onnx": ("subpixel.onnx.cli", "export and rewrite ONNX graphs (ConvTranspose <-> Conv + DepthToSpace)"),
}


def positive_int(text: str) -> int:
    """``argparse`` type for an integer >= 1, with a message that says what was received."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subpixel",
        description="Upsampling layers as one exact operation, and ESPCN super-resolution.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        args = parser.parse_args(argv)
        if args.version:
            from subpixel import __version__

            print(__version__)
            return 0
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module_path, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:  # an optional dependency is missing
        print(
            f"subpixel {name}: cannot import {module_path} ({exc}); "
            "install the extras with: pip install 'subpixel[all]'",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(prog=f"subpixel {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
