"""Run the README's commands as a newcomer would: installed from the clone, from outside it.

Every fenced ``bash`` or ``python`` block of the README must be preceded by a marker line saying what happens to
it here, so that no command goes unchecked by accident:

* ``<!-- readme-check: run ... -->``: run as written, in a scratch folder outside the clone, with the installed
  ``subpixel`` (bash blocks with ``set -euo pipefail``, python blocks with the environment's interpreter). The
  scratch folder holds what the README's examples name: ``photo.png`` (a 96×72 picture), ``shots/`` (two
  small pictures) and ``clip.mp4`` (a 12-frame 64×48 H.264 clip).
* ``<!-- readme-check: run in the checkout ... -->``: run as written in the clone (the install commands).
* ``<!-- readme-check: skip: REASON -->``: not run; the reason says why (e.g. hours of training) and where the
  same commands are checked instead.

Usage::

    python .ci/readme_check.py                      # a fresh virtual environment: torch, then the README's install
    python .ci/readme_check.py --python PY          # an environment that has subpixel installed already
    python .ci/readme_check.py --list               # the blocks and their markers, nothing run

Exit status 0 when every ``run`` block succeeded, 1 otherwise (the failing block and its output are printed),
2 when a block has no marker.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*readme-check:\s*(?P<action>run in the checkout|run|skip)\b(?P<note>.*?)-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
CHECKED_LANGUAGES = ("bash", "python")


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: its language, first line number, text and marker."""

    lang: str
    line: int
    text: str
    action: str | None  # "run", "run in the checkout", "skip", or None (no marker)
    note: str


def blocks(readme: str) -> list[Block]:
    """The fenced blocks of ``readme`` in order, with the marker on the line before each (if any).

    Examples:
        >>> text = "<!-- readme-check: run -->\\n```bash\\necho hi\\n```\\n\\n```python\\nx = 1\\n```\\n"
        >>> [(b.lang, b.line, b.text, b.action) for b in blocks(text)]
        [('bash', 2, 'echo hi\\n', 'run'), ('python', 6, 'x = 1\\n', None)]
    """
    lines = readme.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        found.append(
            Block(
                lang=fence.group("lang"),
                line=start + 1,
                text="".join(f"{line}\n" for line in body),
                action=marker.group("action") if marker else None,
                note=marker.group("note").strip(" :,") if marker else "",
            )
        )
        i += 1
    return found


def unmarked(readme: str) -> list[Block]:
    """The bash and python blocks without a marker (each must say whether it is run)."""
    return [b for b in blocks(readme) if b.lang in CHECKED_LANGUAGES and b.action is None]


def _fixtures(folder: Path, python: str) -> None:
    """``photo.png``, ``shots/`` and ``clip.mp4`` in ``folder``, made with the environment's own packages."""
    script = r"""
import sys
from pathlib import Path
import numpy as np
from PIL import Image

folder = Path(sys.argv[1])
yy, xx = np.mgrid[0:72, 0:96] / 72.0
photo = np.stack([0.5 + 0.5 * np.sin(9 * xx), 0.5 + 0.5 * np.cos(7 * yy), (xx + yy) / 2.4], -1)
Image.fromarray((np.clip(photo, 0, 1) * 255).astype(np.uint8)).save(folder / "photo.png")
(folder / "shots").mkdir()
for i in range(2):
    Image.fromarray((np.clip(np.roll(photo, 9 * i, 1), 0, 1) * 255).astype(np.uint8)).save(folder / "shots" / f"s{i}.png")
import av

with av.open(str(folder / "clip.mp4"), "w") as out:
    stream = out.add_stream("libx264", rate=12)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(12):
        frame = np.roll(photo[:48, :64], i, 1)
        video = av.VideoFrame.from_ndarray((frame * 255).astype(np.uint8), format="rgb24")
        for packet in stream.encode(video):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
"""
    subprocess.run([python, "-c", script, str(folder)], check=True)


def _fresh_environment(folder: Path, torch_requirement: str) -> str:
    """A new virtual environment with torch (pinned as the Makefile pins it); returns its ``bin`` folder."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, torch_requirement], check=True)
    return str(venv / "bin")


def _run_block(block: Block, cwd: Path, env: dict[str, str], python: str, timeout: float) -> tuple[int, str]:
    if block.lang == "bash":
        command = ["bash", "-c", "set -euo pipefail\n" + block.text]
    else:
        command = [python, "-c", block.text]
    proc = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--python", help="an interpreter that has subpixel installed (no fresh environment)")
    parser.add_argument(
        "--torch", default="torch==2.13.0", help="torch for the fresh environment (as the Makefile)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per block")
    parser.add_argument("--list", action="store_true", help="list the blocks and their markers; run nothing")
    args = parser.parse_args(argv)

    text = args.readme.read_text(encoding="utf-8")
    missing = unmarked(text)
    for block in missing:
        print(
            f"{args.readme}:{block.line}: a {block.lang} block without a readme-check marker", file=sys.stderr
        )
    if missing:
        return 2
    checked = [b for b in blocks(text) if b.lang in CHECKED_LANGUAGES]
    if args.list:
        for block in checked:
            print(
                f"line {block.line:4d}  {block.lang:6s}  {block.action}{': ' + block.note if block.note else ''}"
            )
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="readme-check-"))
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        if args.python:
            python = args.python
            env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
            env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
        else:
            bin_dir = _fresh_environment(scratch, args.torch)
            python = str(Path(bin_dir) / "python")
            env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
            env["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
        work = scratch / "work"
        work.mkdir()
        failures = 0
        order = sorted(checked, key=lambda b: b.action != "run in the checkout")  # install first
        fixtures_made = False
        for block in order:
            where = f"README.md:{block.line} ({block.lang})"
            if block.action == "skip":
                print(f"skip  {where}: {block.note}")
                continue
            if block.action == "run in the checkout":
                if args.python:
                    print(f"skip  {where}: --python given, the environment is installed already")
                    continue
                cwd = ROOT
            else:
                cwd = work
                if not fixtures_made:
                    _fixtures(work, python)
                    fixtures_made = True
            started = time.perf_counter()
            code, output = _run_block(block, cwd, env, python, args.timeout)
            seconds = time.perf_counter() - started
            print(f"{'ok   ' if code == 0 else 'FAIL '} {where}, {seconds:.1f} s")
            if code != 0:
                failures += 1
                print(block.text + "--- output ---\n" + output[-6000:], file=sys.stderr)
        return 1 if failures else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
