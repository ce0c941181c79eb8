"""Copies of checkpoint folders (the checkpoints themselves: `official` and `hf` in tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target
