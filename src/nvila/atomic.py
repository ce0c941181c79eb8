"""Writing files and folders so that they appear only when complete, with the permissions any `cp` would give.

`tempfile` makes private names (0600 files, 0700 folders), and so does safetensors' `save_file`; what is renamed
into place here gets the process umask's modes instead (0644 / 0755 under umask 022), so a model folder on a
shared disk, or served by another user or container, can be read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def umask_mode(mode: int) -> int:
    """`mode` less the process umask: what `open` / `mkdir` give a new file (0o666) or folder (0o777)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def temporary_folder(parent: Path, name: str, suffix: str = "") -> Path:
    """A new hidden folder `.{name}.XXXX{suffix}` in `parent` to fill, then `publish` and rename into place."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=suffix, dir=parent))


def publish(folder: Path) -> None:
    """Give `folder` and everything in it the modes a plain `mkdir` / `open` would (before it is renamed into place).

    Files that anyone may execute keep that bit (as `cp` keeps it); every other bit comes from the umask.
    """
    folder_mode, file_mode = umask_mode(0o777), umask_mode(0o666)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(folder_mode)
        else:
            path.chmod(folder_mode if path.stat().st_mode & 0o111 else file_mode)


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `target`, on any error it is removed."""
    tmp = temporary_folder(target.parent, target.name)
    try:
        yield tmp
        publish(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary path)`, then move the file to `path` (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
