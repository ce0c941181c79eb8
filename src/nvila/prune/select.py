"""Which records to keep: the top fraction of every sub-dataset by score, or the baselines (random, clusters).

Every rule keeps `keep_count(n, keep)` = ceil(keep * n) records of a sub-dataset of n (ceil, so no non-empty
sub-dataset disappears and keep = 1 keeps everything; keep * n is rounded to 9 decimals first, so 0.3 * 10
keeps 3, not 4). Ties in score go to the record that comes first in the file. Pure functions of ids, groups,
scores and seeds: no models, no files.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import torch

from nvila.errors import ConfigError


def check_keep(keep: float) -> float:
    if not (isinstance(keep, (int, float)) and 0 < keep <= 1):
        raise ConfigError(f"--keep must be a fraction in (0, 1], got {keep}")
    return float(keep)


def keep_count(n: int, keep: float) -> int:
    """Records kept of a sub-dataset of n: ceil(keep * n)."""
    return min(n, math.ceil(round(check_keep(keep) * n, 9)))


def groups(ids: Sequence[str], group_of: Mapping[str, str]) -> dict[str, list[str]]:
    """Ids by group, each list in file order; groups sorted by name."""
    out: dict[str, list[str]] = {}
    for record_id in ids:
        out.setdefault(group_of[record_id], []).append(record_id)
    return dict(sorted(out.items()))


def top_per_group(
    ids: Sequence[str], group_of: Mapping[str, str], scores: Mapping[str, float | None], keep: float
) -> set[str]:
    """The ceil(keep * n) highest-scored ids of every group (ids without a score are never kept)."""
    order = {record_id: i for i, record_id in enumerate(ids)}
    kept: set[str] = set()
    for members in groups([i for i in ids if scores.get(i) is not None], group_of).values():
        ranked = sorted(members, key=lambda i: (-scores[i], order[i]))
        kept.update(ranked[: keep_count(len(members), keep)])
    return kept


def _generator(seed: int, group: str) -> torch.Generator:
    """A generator per (seed, group), so a group's draw does not depend on the other groups."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(group.encode()))


def random_per_group(ids: Sequence[str], group_of: Mapping[str, str], keep: float, seed: int) -> set[str]:
    """ceil(keep * n) ids of every group drawn uniformly without replacement."""
    kept: set[str] = set()
    for group, members in groups(ids, group_of).items():
        pick = torch.randperm(len(members), generator=_generator(seed, group))[: keep_count(len(members), keep)]
        kept.update(members[i] for i in pick.tolist())
    return kept


def kmeans(x: torch.Tensor, k: int, seed: int, iters: int = 50) -> torch.Tensor:
    """Cluster ids [n] of the rows of x [n, c]: k-means++ seeding, then Lloyd iterations (deterministic)."""
    n = x.shape[0]
    k = min(k, n)
    generator = torch.Generator().manual_seed(seed)
    centres = [x[torch.randint(n, (1,), generator=generator)].squeeze(0)]
    for _ in range(1, k):
        dist = torch.cdist(x, torch.stack(centres)).min(dim=1).values.square()
        if float(dist.sum()) == 0:  # fewer distinct points than clusters
            break
        centres.append(x[torch.multinomial(dist / dist.sum(), 1, generator=generator)].squeeze(0))
    centre = torch.stack(centres)  # [k, c]
    labels = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(x, centre).argmin(dim=1)
        if torch.equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(centre.shape[0]):
            if bool((labels == j).any()):
                centre[j] = x[labels == j].mean(dim=0)
    return labels


def balanced_quota(sizes: Sequence[int], total: int) -> list[int]:
    """Split `total` picks over clusters as evenly as their sizes allow (small clusters are kept whole).

    Water-filling: visit clusters from the smallest, give each min(size, remaining // clusters left); what a
    small cluster cannot take and the division remainders go to the larger ones (the sum is always `total`
    when total <= sum(sizes)).
    """
    quota = [0] * len(sizes)
    remaining = total
    order = sorted(range(len(sizes)), key=lambda j: (sizes[j], j))
    for rank, j in enumerate(order):
        quota[j] = min(sizes[j], remaining // (len(order) - rank))
        remaining -= quota[j]
    return quota


def cluster_per_group(
    ids: Sequence[str],
    group_of: Mapping[str, str],
    features: Mapping[str, torch.Tensor],
    keep: float,
    seed: int,
    clusters: int = 8,
) -> set[str]:
    """Per group: k-means on the features, then ceil(keep * n) ids spread evenly over the clusters (random within)."""
    kept: set[str] = set()
    for group, members in groups(ids, group_of).items():
        labels = kmeans(torch.stack([features[i] for i in members]).float(), clusters, seed)
        by_cluster = [[m for m, label in zip(members, labels.tolist()) if label == j] for j in range(clusters)]
        by_cluster = [c for c in by_cluster if c]
        quota = balanced_quota([len(c) for c in by_cluster], keep_count(len(members), keep))
        generator = _generator(seed, group)
        for cluster, q in zip(by_cluster, quota):
            pick = torch.randperm(len(cluster), generator=generator)[:q]
            kept.update(cluster[i] for i in pick.tolist())
    return kept
