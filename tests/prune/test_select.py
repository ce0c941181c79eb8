"""Selection rules on hand-made scores and features: exact per-sub-dataset top-k, keep bounds, baselines."""

from __future__ import annotations

import argparse

import pytest
import torch

from nvila.errors import ConfigError
from nvila.prune import keep_count, random_per_group, top_per_group
from nvila.prune.cli import keep_fraction
from nvila.prune.select import balanced_quota, cluster_per_group, kmeans


def test_top_k_of_every_sub_dataset_is_exact():
    ids = ["a0", "b0", "a1", "a2", "b1", "a3", "b2", "a4"]
    group = {i: i[0] for i in ids}
    scores = {"a0": 0.5, "a1": 3.0, "a2": -1.0, "a3": 3.0, "a4": 2.0, "b0": 1.0, "b1": 2.0, "b2": None}
    assert top_per_group(ids, group, scores, 0.5) == {"a1", "a3", "a4", "b1"}  # a: ceil(2.5) = 3; b: 2 scored -> 1
    assert top_per_group(ids, group, scores, 0.1) == {"a1", "b1"}  # a tie goes to the record earlier in the file
    assert top_per_group(ids, group, scores, 1.0) == set(ids) - {"b2"}  # unscored records are never kept
    assert top_per_group(ids, group, scores, 0.6) == {"a1", "a3", "a4", "b1", "b0"}  # a: 3; b: ceil(1.2) = 2


def test_keep_count_is_ceil_and_keep_is_bounded():
    assert [keep_count(10, 0.3), keep_count(3, 0.5), keep_count(1, 0.01), keep_count(7, 1.0)] == [3, 2, 1, 7]
    assert keep_count(1000, 0.7) == 700  # 0.7 * 1000 is 700.0000000000001 in floating point
    for bad in (0, -0.5, 1.01, float("nan")):
        with pytest.raises(ConfigError, match=r"fraction in \(0, 1\]"):
            keep_count(10, bad)
        with pytest.raises(argparse.ArgumentTypeError):
            keep_fraction(str(bad))


def test_random_keeps_the_count_of_every_group_reproducibly():
    ids = [f"x{i}" for i in range(40)] + [f"y{i}" for i in range(9)]
    group = {i: i[0] for i in ids}
    kept = random_per_group(ids, group, 0.25, seed=3)
    assert sum(i.startswith("x") for i in kept) == 10 and sum(i.startswith("y") for i in kept) == 3
    assert kept == random_per_group(ids, group, 0.25, seed=3)
    assert kept != random_per_group(ids, group, 0.25, seed=4)


def test_cluster_baseline_spreads_the_kept_records_over_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    sizes = [10, 5, 1]
    points = torch.cat([c + 0.1 * torch.randn(n, 2, generator=generator) for c, n in zip(centres, sizes)])
    truth = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    labels = kmeans(points, 3, seed=0)
    assert len({(int(a), int(b)) for a, b in zip(labels, truth)}) == 3  # the blobs are recovered
    ids = [f"r{i}" for i in range(len(points))]
    kept = cluster_per_group(ids, {i: "all" for i in ids}, dict(zip(ids, points)), 0.5, seed=0, clusters=3)
    per_blob = [sum(f"r{i}" in kept for i in range(len(ids)) if truth[i] == b) for b in range(3)]
    assert per_blob == [4, 3, 1]  # 8 kept: the singleton whole, the rest as even as the sizes allow
    assert balanced_quota([10, 5, 1], 8) == [4, 3, 1]
    assert balanced_quota([2, 9, 9], 20) == [2, 9, 9]
