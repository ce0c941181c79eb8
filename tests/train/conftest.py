"""A small colour-naming dataset and a recipe writer for trainer tests (tiny model, 56 px tiles)."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import from_name
from nvila.synth.writer import write_dataset

COLOURS = ["red", "green", "blue", "yellow"]


@pytest.fixture
def colour_data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = []
    for i in range(24):
        colour = COLOURS[i % len(COLOURS)]
        Image.new("RGB", (40 + i, 40), colour).save(folder / f"{i}.png")
        record = {
            "id": f"c{i}",
            "source": "colours" if i % 2 else "names",
            "image": f"{i}.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is the picture?"},
                {"from": "gpt", "value": colour},
            ],
        }
        lines.append(json.dumps(record))
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "train.jsonl"


@pytest.fixture
def make_recipe(tmp_path, colour_data):
    def make(name: str = "recipe", **changes) -> str:
        recipe = {
            "name": name,
            "output_dir": str(tmp_path / name),
            "model": {"preset": "tiny", "overrides": {"vision": {"image_size": 56}, "s2_scales": [56, 112, 168]}},
            "data": {"train": str(colour_data), "max_length": 512},
            "trainable": {"vision_tower": True, "mm_projector": True, "llm": True},
            "optim": {"lr": 3e-3},
            "micro_batch_size": 4,
            "max_steps": 6,
            "save_every": 2,
            "device": "cpu",
        }
        for key, value in changes.items():
            target = recipe
            *parents, leaf = key.split("__")
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return str(path)

    return make


@pytest.fixture(scope="module")
def reading_data(tmp_path_factory):
    """A synth set with reading questions (pages, charts; shapes with none), up to 6 a record: its train.jsonl."""
    root = tmp_path_factory.mktemp("read") / "ds"
    tasks = {"documents": 8, "charts": 6, "shapes": 2}
    write_dataset(root, tasks, seed=7, image_size=168, heldout=0, max_questions=6, progress=False)
    return root / "train.jsonl"


@pytest.fixture(scope="module")
def tiny_s2_model():
    """(model, processor): the tiny model on 56 px tiles, S2 scales 56/112/168 (a 168 px page: 12 x 12 tokens)."""
    cfg = from_name("tiny").with_overrides({"vision": {"image_size": 56}, "s2_scales": [56, 112, 168]})
    return random_pretrained(cfg)


@pytest.fixture(scope="module")
def processor(tiny_s2_model):
    return tiny_s2_model[1]
