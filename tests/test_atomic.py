"""The one atomic-write helper: permissions, clean-up, errors naming the final file."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from subpixel._atomic import atomic_output, atomic_write, clean_temporaries, is_temporary, temporary_name


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_new_files_get_the_umask_permissions(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "a.json", lambda tmp: tmp.write_text("{}"))
        reference = tmp_path / "plain.txt"
        reference.write_text("")  # what any other program's new file gets
    finally:
        os.umask(old)
    assert _mode(path) == 0o666 & ~umask == _mode(reference)


def test_every_writer_of_the_package_respects_the_umask(tmp_path: Path) -> None:
    """Images, ONNX models and study results used to be created 0600 through ``tempfile.mkstemp``."""
    from subpixel.imageio import write_image

    old = os.umask(0o022)
    try:
        write_image(tmp_path / "a.png", np.zeros((2, 2, 3), dtype=np.float32))
        from subpixel.study.experiment import _write_bytes

        _write_bytes(tmp_path / "results.json", b"{}")
        onnx = pytest.importorskip("onnx")
        from subpixel.onnx._graph import save_model_atomic

        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
        save_model_atomic(onnx.helper.make_model(graph), tmp_path / "m.onnx")
        # safetensors replaces the temporary file with one of its own, made 0600
        from subpixel.sr.models import ESPCN, save

        save(ESPCN(2, widths=(2,), kernel_sizes=(3, 3)), tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    for name in ("a.png", "results.json", "m.onnx", "w.safetensors", "w.json"):
        assert _mode(tmp_path / name) == 0o644, name


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"old")

    def half(tmp: Path) -> None:
        tmp.write_bytes(b"ha")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.bin"]


def test_disk_full_names_the_final_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    with pytest.raises(OSError) as info:
        atomic_write(path, full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_names_the_final_file(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as info, atomic_output(folder / "x.json"):
            pass
    finally:
        folder.chmod(0o755)
    assert info.value.filename == str(folder / "x.json")


def test_errors_about_other_files_are_kept(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info, atomic_output(tmp_path / "out.txt"):
        (tmp_path / "missing-input").read_bytes()
    assert info.value.filename == str(tmp_path / "missing-input")


def test_temporaries_of_killed_processes_are_cleaned(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(child.stdout)  # exited: its temporaries are orphans
    orphan = tmp_path / f".photo.{dead_pid}-0123456789ab.tmp.png"
    old_style = tmp_path / ".photo.1f2e3d4c5b6a.tmp.png"  # imageio before the pid was in the name
    mkstemp_style = tmp_path / ".model.onnx.k2j4h_s9.tmp"
    lookalikes = [tmp_path / ".notes.backup.tmp.txt", tmp_path / ".a.12-xyz.tmp.png"]  # a user's hidden files
    live = temporary_name(tmp_path / "photo.png")  # this process: still being written
    kept = [tmp_path / "photo.png", tmp_path / ".hidden.png", tmp_path / "a.tmp.png", *lookalikes]
    for path in (orphan, old_style, mkstemp_style, live, *kept):
        path.write_bytes(b"x")
    assert all(is_temporary(p) for p in (orphan, old_style, mkstemp_style, live))
    assert not any(is_temporary(p) for p in kept)
    removed = clean_temporaries(tmp_path)
    assert sorted(removed) == sorted([orphan, old_style, mkstemp_style])
    assert sorted(tmp_path.iterdir()) == sorted([live, *kept])
