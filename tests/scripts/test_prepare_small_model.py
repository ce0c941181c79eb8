"""scripts/prepare_small_model.py: the colour mix keeps exactly the colour and shape-naming turns, each answer
still after its own question, and the image tag on the first question."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nvila.data.mixture import load_mixture
from nvila.synth.writer import write_dataset


@pytest.fixture(scope="module")
def prepare(load_script):
    return load_script("prepare_small_model")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synth"
    tasks = {"shapes": 40, "charts": 40, "documents": 6, "events": 4}
    write_dataset(root, tasks, seed=5, image_size=64, heldout=0, max_questions=8, progress=False, workers=1)
    return root


def test_colour_turns_keep_only_colour_questions_with_their_answers(prepare, dataset, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prepare", str(dataset), "--colour-mix"])
    prepare.main()
    originals = {r["id"]: r for r in map(json.loads, (dataset / "images.jsonl").read_text().splitlines())}
    kept = [json.loads(line) for line in (dataset / "colour.jsonl").read_text().splitlines()]
    expected_ids = {i for i, r in originals.items() if set(r["meta"]["templates"]) & set(prepare.COLOUR_TEMPLATES)}
    assert expected_ids and {r["id"] for r in kept} == expected_ids
    for record in kept:
        original = originals[record["id"]]
        pairs = {
            (q["value"].removeprefix(prepare.IMAGE_TAG), a["value"], t)
            for q, a, t in zip(
                original["conversations"][::2], original["conversations"][1::2], original["meta"]["templates"]
            )
        }
        conv, templates = record["conversations"], record["meta"]["templates"]
        assert set(templates) <= set(prepare.COLOUR_TEMPLATES) and len(conv) == 2 * len(templates)
        assert [t["from"] for t in conv] == ["human", "gpt"] * len(templates)
        assert conv[0]["value"].startswith(prepare.IMAGE_TAG)
        assert sum(t["value"].count("<image>") for t in conv) == 1
        for q, a, t in zip(conv[::2], conv[1::2], templates):
            assert (q["value"].removeprefix(prepare.IMAGE_TAG), a["value"], t) in pairs
    mixture = load_mixture(dataset / "colour.yaml")
    assert set(mixture.ratios.values()) == {1.0, 0.25}
