"""The README's commands are all accounted for: each bash or python block says whether CI runs it.

CI (``.ci/run``) runs the marked blocks with ``.ci/readme_check.py`` in a fresh environment, from outside the
checkout; this test only checks the markers, so that a new block cannot go unchecked unnoticed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "readme_check.py"


def _checker():
    if not SCRIPT.is_file():
        pytest.skip("not a checkout: .ci/readme_check.py is absent")
    spec = importlib.util.spec_from_file_location("readme_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_every_command_block_of_the_readme_is_marked() -> None:
    checker = _checker()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [b.line for b in checker.unmarked(text)] == []
    actions = [b.action for b in checker.blocks(text) if b.lang in ("bash", "python")]
    assert actions.count("run") >= 3 and "run in the checkout" in actions


def test_an_unmarked_block_is_found() -> None:
    checker = _checker()
    text = "<!-- readme-check: run -->\n```bash\necho hi\n```\n\n```python\nx = 1\n```\n"
    assert [(b.lang, b.line) for b in checker.unmarked(text)] == [("python", 6)]


def test_the_readme_names_no_work_organisation_and_no_file_outside_the_clone() -> None:
    words = ("session", "issue-", "required", "goal", "this vm", "../shared/GUIDE")
    for name in ("README.md", "docs/onnx.md", "docs/training.md", "benchmarks/README.md"):
        text = (ROOT / name).read_text(encoding="utf-8").lower()
        found = [w for w in words if w.lower() in text]
        assert found == [], (name, found)
