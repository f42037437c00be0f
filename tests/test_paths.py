"""Shipped records carry no absolute paths: subpixel._paths and the committed JSON files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from subpixel._paths import portable_path, portable_paths

ROOT = Path(__file__).resolve().parents[1]


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_portable_path_is_relative_and_reversible(tmp_path: Path) -> None:
    start = tmp_path / "repo"
    for target in (
        tmp_path / "repo" / "runs" / "x3",
        tmp_path / "data" / "T91",
        Path(os.path.abspath(os.sep)),
    ):
        recorded = portable_path(str(target), start=start)
        assert not os.path.isabs(recorded), recorded
        assert (start / recorded).resolve() == target.resolve()
    assert portable_path("runs/x3", start=start) == "runs/x3"


def test_portable_paths_walks_records_without_modifying_them(tmp_path: Path) -> None:
    record = {"out": str(tmp_path / "out"), "cmd": ("--out", str(tmp_path / "out")), "n": 3, "x": None}
    before = json.dumps(record)
    result = portable_paths(record, start=tmp_path)
    assert result == {"out": "out", "cmd": ["--out", "out"], "n": 3, "x": None}
    assert json.dumps(record) == before


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "src" / "subpixel" / "sr" / "weights").glob("*.json"))
    + sorted((ROOT / "docs").glob("**/*.json")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_shipped_json_records_carry_no_absolute_paths(path: Path) -> None:
    absolute = [s for s in _strings(json.loads(path.read_text(encoding="utf-8"))) if os.path.isabs(s)]
    assert not absolute, f"{path.name} records absolute paths {absolute[:3]}"
