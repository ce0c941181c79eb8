"""Atomic writes: nothing partial is ever visible, and what appears has the modes the umask gives (as `cp`)."""

from __future__ import annotations

import os

import pytest

from nvila.atomic import atomic_folder, atomic_write, atomic_write_text
from tests.conftest import assert_modes_follow_umask


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_folders_and_files_get_the_umask_modes(tmp_path, umask):
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights.bin").write_bytes(b"\0")
        (tmp / "sub" / "weights.bin").chmod(0o600)  # as safetensors' save_file leaves it
        (tmp / "run.sh").write_text("#!/bin/sh\n")
        (tmp / "run.sh").chmod(0o700)
    atomic_write_text(tmp_path / "model" / "report.json", "{}")
    atomic_write(tmp_path / "model" / "plot.png", lambda path: path.write_bytes(b"png"))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["plot.png", "report.json", "run.sh", "sub"]
    assert (tmp_path / "model" / "run.sh").stat().st_mode & 0o777 == 0o777 & ~umask  # executable stays executable
    (tmp_path / "model" / "run.sh").unlink()
    assert (tmp_path / "model" / "report.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~umask
    assert_modes_follow_umask(tmp_path / "model")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    atomic_write_text(target, "old")

    def fail(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run.json"]
    with pytest.raises(OSError), atomic_folder(tmp_path / "folder") as tmp:
        (tmp / "a").write_text("a")
        raise OSError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
