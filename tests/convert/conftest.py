"""Official-layout checkpoints of the tiny presets (saved once per session) and converted copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nvila.checkpoint import save
from nvila.convert.to_hf import to_hf


@pytest.fixture(scope="session")
def official(tmp_path_factory, tiny, tiny_lite) -> dict[str, Path]:
    """{"tiny": 2x2 Dynamic-S2 checkpoint, "tiny-lite": 3x3 dynamic-tiling checkpoint} in the official layout."""
    root = tmp_path_factory.mktemp("official")
    return {name: save(m, p.tokenizer, root / name) for name, (m, p) in (("tiny", tiny), ("tiny-lite", tiny_lite))}


@pytest.fixture(scope="session")
def hf(tmp_path_factory, official) -> dict[str, Path]:
    """The `official` checkpoints converted to the HF layout (tiny-lite sharded into files of <= 64 kB)."""
    root = tmp_path_factory.mktemp("hf")
    return {
        "tiny": to_hf(official["tiny"], root / "tiny").path,
        "tiny-lite": to_hf(official["tiny-lite"], root / "tiny-lite", max_shard_bytes=64_000).path,
    }


def copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target
