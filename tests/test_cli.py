"""The command line as one package with one error path.

User and environment errors end with one line and a non-zero exit, never a traceback: Ctrl-C in every command,
a missing optional dependency (run as an installed user would, from outside the checkout, with the extras made
unimportable), an output folder that cannot be written, bad numbers.
"""

from __future__ import annotations

import argparse
import ast
import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import subpixel
from subpixel.cli import COMMANDS, main

SRC = Path(subpixel.__file__).resolve().parent

#: every optional dependency (extras sr, video, onnx, dev): what a plain ``pip install subpixel`` lacks
_EXTRAS = (
    "PIL",
    "safetensors",
    "tqdm",
    "matplotlib",
    "png",
    "tifffile",
    "av",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "skimage",
)

_BLOCKER = f"""
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(_EXTRAS)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(SRC.parent), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join([*extra.pop("PREPEND", "").split(os.pathsep), *paths]).strip(
        os.pathsep
    )
    env.update(extra)
    return env


def test_library_modules_do_not_import_the_cli() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "cli") or path == SRC / "__main__.py":  # the entry points
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{path.relative_to(SRC)}: {n}" for n in names if n.startswith("subpixel.cli")]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_ctrl_c_is_one_line_and_exit_130_in_every_command(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(COMMANDS[name][0])

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "add_arguments", lambda parser: None)
    monkeypatch.setattr(module, "run", interrupted)
    assert main([name]) == 130
    captured = capsys.readouterr()
    assert captured.err == f"subpixel {name}: interrupted\n"


@pytest.mark.slow  # two interpreters; the handler itself is tested in every command above
def test_sigint_and_sigterm_end_a_running_command_with_one_line(tmp_path: Path) -> None:
    for sig, code, word in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "subpixel.cli", "convert-demo", "--repeats", "1000000", "--size", "8"],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # running: it printed the layers
        time.sleep(0.5)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code
        assert err.strip() == f"subpixel convert-demo: {word}"


#: (arguments, extra named) for every command that needs an optional dependency
_NEEDS_EXTRAS = [
    (["demo"], "sr"),
    (["evaluate", "--pretrained", "--scale", "3", "--data", "."], "sr"),
    (["upscale", "photo.png", "--scale", "2"], "sr"),
    (["train", "--scale", "3", "--data", ".", "--out", "run"], "sr"),
    (["study", "--quick", "--data", "."], "sr"),
    (["onnx", "export", "-o", "m.onnx", "--pretrained", "3"], "onnx"),
    (["onnx", "rewrite", "m.onnx", "-o", "n.onnx"], "onnx"),
]

#: runs every command of _NEEDS_EXTRAS in one interpreter (one torch import), as the console script would
_RUN_ALL = """
import contextlib, io, json, sys
from subpixel.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit:
            code = exit.code
        except BaseException as exc:
            import traceback
            traceback.print_exc(file=err)
            code = "raised"
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def _installed_without_extras(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder outside the checkout, and an environment where no optional package can be imported."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_BLOCKER)
    work = tmp_path / "work"
    work.mkdir()
    (work / "photo.png").write_bytes(b"\x89PNG not really")
    return work, _env(PREPEND=str(shim))


def test_installed_without_extras_every_command_names_the_extra(tmp_path: Path) -> None:
    """As after a plain ``pip install subpixel``: run from outside the checkout, optional packages absent."""
    work, env = _installed_without_extras(tmp_path)
    script = Path(sys.executable).with_name("subpixel")  # the console script, where installed
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "subpixel.cli"]
    proc = subprocess.run([*command, "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (2, proc.stderr.splitlines()[0] + "\n")
    assert "pip install '.[sr]'" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_ALL, json.dumps([args for args, _ in _NEEDS_EXTRAS])],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for (args, extra), (code, err) in zip(
        _NEEDS_EXTRAS, json.loads(proc.stdout.splitlines()[-1]), strict=True
    ):
        assert code == 2, (args, code, err)
        assert "Traceback" not in err and err.count("\n") == 1, (args, err)
        assert f"pip install '.[{extra}]'" in err, (args, err)
    assert sorted(p.name for p in work.iterdir()) == ["photo.png"]  # nothing created


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    """The test above must be able to fail: with the shim, importing an extra fails."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_BLOCKER)
    proc = subprocess.run(
        [sys.executable, "-c", "import PIL"], env=_env(PREPEND=str(shim)), capture_output=True, text=True
    )
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


@pytest.mark.parametrize("args", [["--stride", "0"], ["--size", "-5"], ["--padding", "9", "--size", "2"]])
def test_convert_demo_rejects_bad_numbers(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["convert-demo", *args, "--repeats", "1"])
    except SystemExit as exit:  # argparse: usage, then one error line
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("subpixel convert-demo: error:")


# ------------------------------------------------------------------------- outputs that cannot be written


def _make_unwritable(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every atomic write fails as in a read-only folder (tests may run as root, where chmod does
    not stop writes)."""
    from subpixel import _atomic

    real_open = os.open

    def refuse(path: str, flags: int, mode: int = 0o777) -> int:
        if _atomic.is_temporary(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(_atomic.os, "open", refuse)


def _one_line_naming(err: str, path: Path) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and str(path) in lines[0] and "Permission denied" in lines[0], err


def test_demo_into_a_read_only_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from subpixel.imageio import write_image

    image = tmp_path / "small.png"
    yy, xx = np.mgrid[0:48, 0:48] / 48
    write_image(image, np.stack([xx, yy, xx * yy], -1))
    out = tmp_path / "demo.png"
    _make_unwritable(monkeypatch)
    assert main(["demo", "--image", str(image), "-o", str(out)]) == 1
    _one_line_naming(capsys.readouterr().err, out)


def test_evaluate_into_a_read_only_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    write_synthetic_images,
) -> None:
    data = tmp_path / "set"
    write_synthetic_images(data, 1, (24, 24), 0)
    _make_unwritable(monkeypatch)
    for option, name in (("--json", "r.json"), ("--figure", "crops.png")):
        out = tmp_path / name
        code = main(
            [
                "evaluate",
                "--pretrained",
                "--scale",
                "2",
                "--data",
                str(data),
                "--no-progress",
                option,
                str(out),
            ]
        )
        assert code == 1
        _one_line_naming(capsys.readouterr().err, out)


def test_onnx_rewrite_into_a_read_only_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 2, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 2, 2])],
    )
    source = tmp_path / "in.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(source))
    out = tmp_path / "out.onnx"
    _make_unwritable(monkeypatch)
    code = main(["onnx", "rewrite", str(source), "-o", str(out), "--no-verify"])
    captured = capsys.readouterr()
    assert code == 1
    _one_line_naming(captured.err, out)


@pytest.mark.parametrize("command", ["train", "study"])
def test_train_and_study_out_that_cannot_be_a_folder(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_synthetic_images,
) -> None:
    for name in ("T91", "BSDS200", "Set5", "Set14"):
        write_synthetic_images(tmp_path / "data" / name, 2, (64, 64), 0)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    if command == "train":
        args = [
            "train",
            "--scale",
            "2",
            "--data",
            str(tmp_path / "data" / "T91"),
            "--out",
            str(out),
            "--steps",
            "1",
        ]
    else:
        args = ["study", "--quick", "--data", str(tmp_path / "data"), "--out", str(out), "--no-progress"]
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and str(blocker) in err, err


_BUG = """
import sys
import subpixel.cli.convert_demo as command
from subpixel.cli import main

def run(args):  # a ValueError that is not the package's own: what a torch or numpy bug raises
    raise ValueError("expected a 4-D tensor, got 3-D")

command.run = run
sys.exit(main(["convert-demo"]))
"""


def test_a_plain_value_error_inside_a_command_is_a_bug_with_a_traceback() -> None:
    """Only :class:`SubpixelError` (bad input) is one line and exit 2; any other ``ValueError`` is a bug."""
    proc = subprocess.run(
        [sys.executable, "-c", _BUG], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: expected a 4-D tensor, got 3-D" in proc.stderr


def test_the_package_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subpixel.cli.convert_demo as command
    from subpixel.errors import SubpixelError

    def run(args: argparse.Namespace) -> int:
        raise SubpixelError("--stride must be >= 1, got 0")

    monkeypatch.setattr(command, "run", run)
    assert main(["convert-demo"]) == 2
    assert capsys.readouterr().err == "subpixel convert-demo: error: --stride must be >= 1, got 0\n"


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--lr", "-1"],  # the training configuration's own checks
        ["train", "--widths", "0"],  # the model's
        ["train", "--data", "{missing}"],  # the data's
    ],
)
def test_user_errors_from_the_library_stay_one_line(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], write_synthetic_images
) -> None:
    """The library raises SubpixelError for what it was given, so the command's one-line rule still holds."""
    write_synthetic_images(tmp_path / "data", 2, (64, 64), 0)
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in args]
    if "--data" not in argv:
        argv += ["--data", str(tmp_path / "data")]
    code = main([*argv, "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("subpixel train: error: "), err
