"""A tiny base checkpoint (56 px tiles, saved once per session) and a small colour dataset with two sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from nvila.checkpoint import save
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import NVILAConfig, from_name

COLOURS = ["red", "green", "blue", "yellow"]


def tiny_config(**text: int) -> NVILAConfig:
    """The `tiny` preset at 56 px tiles (fast on 2 CPU cores); `text` changes LLM sizes."""
    data = from_name("tiny").to_dict()
    data["vision"]["image_size"] = 56
    data["s2_scales"] = [56, 112, 168]
    data["text"].update(text)
    return NVILAConfig.from_dict(data)


def save_random(folder: Path, seed: int = 0, **text: int) -> Path:
    model, processor = random_pretrained(tiny_config(**text), seed=seed)
    return save(model, processor.tokenizer, folder)


def write_colour_dataset(folder: Path, n: int = 24, sources: tuple[str, ...] = ("names", "colours")) -> Path:
    """n one-colour images of varied widths, a question each; records alternate between `sources`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        Image.new("RGB", (40 + 3 * i, 40), colour).save(folder / f"{i}.png")
        record = {
            "id": f"c{i}",
            "source": sources[i % len(sources)],
            "image": f"{i}.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is the picture?"},
                {"from": "gpt", "value": colour if i % 3 else f"{colour}, mostly"},
            ],
        }
        lines.append(json.dumps(record))
    path = folder / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def base_checkpoint(tmp_path_factory) -> Path:
    return save_random(tmp_path_factory.mktemp("base") / "base", seed=0)


@pytest.fixture
def colour_data(tmp_path) -> Path:
    return write_colour_dataset(tmp_path / "data")
