"""Mixtures: every `sources` entry is drawn round(ratio * size) times an epoch, also when entries share a record
source; the order is a function of (seed, epoch); malformed mixture files are named."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from nvila.data.mixture import load_mixture
from nvila.errors import ConfigError


def write_records(path, prefix, n, source):
    rows = [
        {
            "id": f"{prefix}{i}",
            "source": source,
            "conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A"}],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def mixture_file(tmp_path):
    write_records(tmp_path / "a.jsonl", "a", 10, "pages")
    write_records(tmp_path / "b.jsonl", "b", 10, "pages")  # the same record source as a.jsonl, its own ratio
    write_records(tmp_path / "c.jsonl", "c", 4, "videos")
    (tmp_path / "mix.yaml").write_text(
        "sources:\n  - {path: a.jsonl, ratio: 2.0}\n  - {path: b.jsonl, ratio: 0.5}\n  - {path: c.jsonl}\n"
    )
    return tmp_path / "mix.yaml"


def test_each_entry_keeps_its_ratio_when_entries_share_a_source(mixture_file):
    mixture = load_mixture(mixture_file)
    ids = [mixture.records[i].id for i in mixture.epoch_order(seed=3, epoch=0)]
    counts = Counter(ids)
    assert all(counts[f"a{i}"] == 2 for i in range(10))
    assert sum(counts[f"b{i}"] for i in range(10)) == 5 and max(counts[f"b{i}"] for i in range(10)) == 1
    assert all(counts[f"c{i}"] == 1 for i in range(4))
    assert len(ids) == 20 + 5 + 4


def test_order_is_a_function_of_seed_and_epoch(mixture_file):
    mixture = load_mixture(mixture_file)
    first = mixture.epoch_order(seed=3, epoch=0)
    assert load_mixture(mixture_file).epoch_order(seed=3, epoch=0) == first
    assert mixture.epoch_order(seed=3, epoch=1) != first
    assert mixture.epoch_order(seed=4, epoch=0) != first


def test_a_records_file_is_one_entry_drawn_once(tmp_path):
    write_records(tmp_path / "a.jsonl", "a", 6, "pages")
    order = load_mixture(tmp_path / "a.jsonl").epoch_order(seed=0, epoch=0)
    assert sorted(order) == list(range(6))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sources: [\n", "malformed YAML"),
        ("other: 1\n", "non-empty 'sources'"),
        ("sources:\n  - {ratio: 1.0}\n", "needs a 'path'"),
        ("sources:\n  - {path: a.jsonl, weight: 2}\n", "unknown keys: weight"),
        ("sources:\n  - {path: a.jsonl, ratio: -1}\n", "negative ratio"),
    ],
)
def test_malformed_mixtures_are_named(tmp_path, text, match):
    write_records(tmp_path / "a.jsonl", "a", 2, "pages")
    (tmp_path / "mix.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_mixture(tmp_path / "mix.yaml")


def test_a_missing_mixture_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="mixture file not found"):
        load_mixture(tmp_path / "absent.yaml")
