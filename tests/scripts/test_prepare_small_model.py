"""scripts/prepare_small_model.py: the colour mix keeps exactly the colour and shape-naming turns, each answer
still after its own question, and the image tag on the first question; the read mix splits the image records by
kind and draws each file at its own ratio."""

from __future__ import annotations

import json
import sys
from collections import Counter
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


def assert_drawn_at(path: Path, ratios: list[float]) -> None:
    """An epoch of the mixture `path` draws round(ratio * size) records of its k-th file, ratios[k]."""
    mixture = load_mixture(path)
    draws = Counter(mixture.entries[i] for i in mixture.epoch_order(seed=0, epoch=0))
    sizes = Counter(mixture.entries)
    assert len(sizes) == len(ratios)
    assert [draws[k] for k in range(len(ratios))] == [round(r * sizes[k]) for k, r in enumerate(ratios)]


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
    assert_drawn_at(dataset / "colour.yaml", list(prepare.COLOUR_MIX.values()))


def test_read_mix_splits_images_by_kind_and_draws_each_file_at_its_ratio(prepare, dataset, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prepare", str(dataset), "--video-ratio", "2.0", "--read-mix"])
    prepare.main()
    images = (dataset / "images.jsonl").read_text().splitlines()
    for source in ("documents", "charts", "shapes"):
        lines = (dataset / f"{source}.jsonl").read_text().splitlines()
        assert lines == [line for line in images if json.loads(line)["source"] == source]
    assert_drawn_at(dataset / "read.yaml", [2.0, *prepare.READ_MIX.values()])
    assert_drawn_at(dataset / "clock.yaml", [prepare.CLOCK_VIDEO_RATIO, *prepare.READ_MIX.values()])
    assert_drawn_at(dataset / "clock-share.yaml", list(prepare.CLOCK_SHARE_MIX.values()))
    assert_drawn_at(dataset / "replay.yaml", list(prepare.REPLAY_MIX.values()))
    assert_drawn_at(dataset / "rebalance.yaml", list(prepare.REBALANCE_MIX.values()))
