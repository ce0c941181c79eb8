"""The pruning job: read a records file, score or cluster it, keep a fraction of every sub-dataset, write it.

Outputs: the pruned records file (the kept records verbatim, in file order; media paths rewritten relative to
the output's folder when it differs from the input's), for DeltaLoss the score file (`scoring.ScoreFile`) and a
histogram of the scores per sub-dataset with each one's threshold (PNG).
Owns: input checks (ids, `source` fields, empty sub-datasets), loading the models and the files above.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nvila.atomic import atomic_write_text
from nvila.checkpoint import resolve_device, resolve_dtype
from nvila.data.records import Record, read_raw, read_records
from nvila.errors import ConfigError
from nvila.loader import load
from nvila.prune.scoring import ScoreFile, check_same_tokenizer, mean_tower_features, score_deltaloss
from nvila.prune.select import check_keep, cluster_per_group, groups, random_per_group, top_per_group

log = logging.getLogger(__name__)

PRUNE_METHODS = ("deltaloss", "random", "cluster")
GROUPINGS = ("source", "none")  #: prune each sub-dataset (`source` field) on its own, or the file as one


@dataclass
class PruneSettings:
    data: str
    keep: float = 0.5
    method: str = "deltaloss"
    large: str | None = None
    small: str | None = None
    by: str = "source"
    out: str | None = None  #: default: <data folder>/<stem>.<method><percent>.jsonl
    scores: str | None = None  #: default: <out folder>/<data stem>.deltaloss-scores.jsonl
    batch_size: int = 8
    max_length: int = 4096
    seed: int = 0
    clusters: int = 8
    device: str = "auto"
    dtype: str = "float32"

    def validate(self) -> None:
        check_keep(self.keep)
        if self.method not in PRUNE_METHODS:
            raise ConfigError(f"unknown pruning method {self.method!r}; use one of {', '.join(PRUNE_METHODS)}")
        if self.by not in GROUPINGS:
            raise ConfigError(f"--by must be one of {', '.join(GROUPINGS)}, got {self.by!r}")
        if self.method == "deltaloss" and not (self.large and self.small):
            raise ConfigError("DeltaLoss needs both --large and --small models")
        if self.method == "cluster" and not (self.small or self.large):
            raise ConfigError("the cluster baseline needs a model for tower features: give --small (or --large)")
        if self.batch_size < 1 or self.clusters < 1:
            raise ConfigError("--batch-size and --clusters must be >= 1")

    @property
    def out_path(self) -> Path:
        if self.out:
            return Path(self.out)
        data = Path(self.data)
        return data.with_name(f"{data.stem}.{self.method}{round(self.keep * 100)}.jsonl")

    @property
    def scores_path(self) -> Path:
        if self.scores:
            return Path(self.scores)
        return self.out_path.with_name(f"{Path(self.data).stem}.deltaloss-scores.jsonl")


@dataclass
class PruneResult:
    out: Path
    kept: dict[str, tuple[int, int]]  #: group -> (kept, total)
    histogram: Path | None = None
    scores: Path | None = None


def group_records(path: Path, records: list[Record], raw: list[tuple[int, dict]], by: str) -> dict[str, str]:
    """id -> group; refuses duplicate ids and, with by="source", records without a `source`."""
    seen: dict[str, int] = {}
    for (lineno, _), record in zip(raw, records):
        if record.id in seen:
            raise ConfigError(f"{path}:{lineno}: duplicate record id {record.id!r} (first at line {seen[record.id]})")
        seen[record.id] = lineno
    if by == "none":
        return {r.id: "all" for r in records}
    missing = [lineno for lineno, item in raw if not str(item.get("source") or "").strip()]
    if missing:
        lines = ", ".join(str(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(
            f"{path}: {len(missing)} record(s) have no 'source' (line {lines}); pruning --by source keeps a fraction "
            "of every sub-dataset, so each record needs one (or pass --by none to prune the file as one set)"
        )
    return {r.id: r.source for r in records}


def _load_model(path: str, settings: PruneSettings):
    device = "cuda" if settings.device == "auto" and torch.cuda.is_available() else settings.device
    device = "cpu" if device == "auto" else device
    return load(path, device=resolve_device(device), dtype=resolve_dtype(settings.dtype))


def _scores(settings: PruneSettings, records: list[Record]) -> dict[str, dict[str, Any]]:
    large, small = _load_model(settings.large, settings), _load_model(settings.small, settings)
    check_same_tokenizer(large[1], small[1])
    models = {"large": str(Path(settings.large).resolve()), "small": str(Path(settings.small).resolve())}
    return score_deltaloss(
        records, large, small, ScoreFile(settings.scores_path, models),
        batch_size=settings.batch_size, max_length=settings.max_length,
    )  # fmt: skip


def _check_not_empty(group_of: dict[str, str], usable: set[str], rows: dict[str, dict] | None) -> None:
    for group, members in groups(list(group_of), group_of).items():
        if not any(m in usable for m in members):
            reasons = sorted({rows[m].get("skipped", "") for m in members}) if rows else ["no usable media"]
            raise ConfigError(
                f"sub-dataset {group!r} has no usable records ({len(members)} skipped: {'; '.join(reasons)[:300]})"
            )


def _rebase(item: dict[str, Any], source: Path, target: Path) -> dict[str, Any]:
    """The record with media paths relative to `target` instead of `source` (unchanged when they agree)."""
    if source.resolve() == target.resolve():
        return item
    item = dict(item)
    for key in ("image", "video"):
        value = item.get(key)
        if value is None:
            continue
        move = lambda p: os.path.relpath((source / p).resolve(), target.resolve())  # noqa: E731
        item[key] = [move(p) for p in value] if isinstance(value, list) else move(value)
    return item


def write_records(path: Path, items: list[dict[str, Any]]) -> None:
    """JSONL, atomically."""
    atomic_write_text(path, "".join(json.dumps(item) + "\n" for item in items))


def write_histogram(path: Path, rows: dict[str, dict], group_of: dict[str, str], kept: set[str]) -> Path:
    """Scores per group (one panel each), with the lowest kept score as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_group = groups([i for i in rows if rows[i].get("score") is not None and i in group_of], group_of)
    fig, axes = plt.subplots(len(by_group), 1, figsize=(7, 2.2 * len(by_group) + 0.6), squeeze=False)
    for ax, (group, members) in zip(axes[:, 0], by_group.items()):
        values = [rows[m]["score"] for m in members]
        ax.hist(values, bins=min(50, max(5, len(values) // 4)), color="tab:blue", alpha=0.8)
        kept_values = [rows[m]["score"] for m in members if m in kept]
        if kept_values:
            label = f"kept {len(kept_values)}/{len(values)}"
            ax.axvline(min(kept_values), color="tab:red", linestyle="--", label=label)
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(group, fontsize=9)
        ax.set_ylabel("records")
    axes[-1, 0].set_xlabel("DeltaLoss = log p_large(answers) - log p_small(answers)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def prune(settings: PruneSettings) -> PruneResult:
    """Run the job; returns where things went and how many records each group kept."""
    settings.validate()
    data = Path(settings.data)
    records = read_records(data)
    raw = read_raw(data)
    group_of = group_records(data, records, raw, settings.by)
    ids = [r.id for r in records]
    rows = histogram = None
    if settings.method == "deltaloss":
        rows = _scores(settings, records)
        _check_not_empty(group_of, {i for i in ids if rows[i].get("score") is not None}, rows)
        kept = top_per_group(ids, group_of, {i: rows[i].get("score") for i in ids}, settings.keep)
    elif settings.method == "random":
        kept = random_per_group(ids, group_of, settings.keep, settings.seed)
    else:
        model, processor = _load_model(settings.small or settings.large, settings)
        features, usable = mean_tower_features(model, processor, records, batch_size=settings.batch_size)
        _check_not_empty(group_of, {i for i, ok in zip(ids, usable) if ok}, None)
        features_of = dict(zip(ids, features))
        kept = cluster_per_group(ids, group_of, features_of, settings.keep, settings.seed, settings.clusters)
    out = settings.out_path
    write_records(out, [_rebase(item, data.parent, out.parent) for (_, item), r in zip(raw, records) if r.id in kept])
    if rows is not None:
        histogram = write_histogram(out.with_suffix(".hist.png"), rows, group_of, kept)
    summary = {g: (sum(m in kept for m in members), len(members)) for g, members in groups(ids, group_of).items()}
    for group, (k, n) in summary.items():
        log.info("%s: kept %d of %d", group, k, n)
    scores = settings.scores_path if rows is not None else None
    return PruneResult(out, summary, histogram, scores)
