"""Shared fixtures: tiny random models (built once per session) and small images written on the fly."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nvila.checkpoint import save
from nvila.convert.to_hf import to_hf
from nvila.factory import random_pretrained

PARITY_DIR = Path(__file__).resolve().parents[2] / "shared" / "parity"


@pytest.fixture(scope="session")
def tiny():
    """(model, processor) of the `tiny` preset: Dynamic-S2, 2x2 projector, 448 px tiles."""
    return random_pretrained("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_lite():
    """(model, processor) of the `tiny-lite` preset: dynamic tiling, 3x3 projector."""
    return random_pretrained("tiny-lite", seed=0)


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


MAIN = "1" * 40  #: the commit refs/main points to: the tiny model in the official layout
V2 = "2" * 40  #: the commit of branch v2: the tiny-lite model in the HF layout
REPO = "nvila-test/tiny"


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory, official) -> Path:
    """HF_HOME with `hub/models--nvila-test--tiny/` as huggingface_hub lays it out: refs/main and refs/v2 hold
    commit hashes, snapshots/<hash>/ the files of that commit."""
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    shutil.copytree(official["tiny"], repo / "snapshots" / MAIN)
    to_hf(official["tiny-lite"], repo / "snapshots" / V2)
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v2").write_text(V2)
    return home


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB image (random content makes mix-ups between tiles or images visible)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@pytest.fixture
def image_file(tmp_path):
    """Factory writing a random PNG of the given size and returning its path."""

    def make(width: int = 640, height: int = 480, seed: int = 0, name: str = "image.png") -> Path:
        path = tmp_path / name
        noise_image(width, height, seed).save(path)
        return path

    return make


# Files written by nvila must follow the process umask like `cp` (0644 / 0755 here); the suite fixes the umask so
# that `assert_modes_follow_umask` checks the modes a shared disk needs, whatever the caller's umask is.
os.umask(0o022)


def assert_modes_follow_umask(root: Path) -> None:
    """Every folder under `root` (itself included) has mode 0o777 less the umask, every file 0o666 less it."""
    umask = os.umask(0)
    os.umask(umask)
    wrong = [
        f"{path.relative_to(root.parent)}: {oct(stat.S_IMODE(path.stat().st_mode))}"
        for path in [root, *root.rglob("*")]
        if stat.S_IMODE(path.stat().st_mode) != (0o777 if path.is_dir() else 0o666) & ~umask
    ]
    assert not wrong, f"modes that do not follow umask {oct(umask)}: {wrong}"
