"""Dataset mixtures and the deterministic order samples are visited in.

A mixture file (YAML)::

    sources:
      - {path: synth/train.jsonl, ratio: 1.0}        # every record once per epoch
      - {path: more/ocr.jsonl, ratio: 0.5, media_root: more/}   # a random half per epoch
      - {path: small/video.jsonl, ratio: 2.0}        # every record twice per epoch

Each epoch holds round(ratio * size) draws per source entry (files that share a record `source` keep their own
ratios), shuffled together with a generator seeded by (seed, epoch), so a position (epoch, offset) identifies the
next sample exactly (resumable).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from nvila.data.records import Record, read_records
from nvila.errors import ConfigError


@dataclass
class Mixture:
    records: list[Record]
    entries: list[int]  #: per record, the index of the `sources` entry it came from (0 for a records file)
    ratios: list[float]  #: per `sources` entry, its ratio ([1.0] for a records file)

    def epoch_order(self, seed: int, epoch: int) -> list[int]:
        """Record indices visited in `epoch`: round(ratio * size) draws of every (entry, record source) group,
        groups taken in (source name, entry) order, shuffled together."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        groups: dict[tuple[str, int], list[int]] = {}
        for index, (record, entry) in enumerate(zip(self.records, self.entries)):
            groups.setdefault((record.source, entry), []).append(index)
        order: list[int] = []
        for key in sorted(groups):
            indices = groups[key]
            draws = round(self.ratios[key[1]] * len(indices))
            whole, part = divmod(draws, len(indices))
            order += indices * whole
            if part:
                pick = torch.randperm(len(indices), generator=generator)[:part].tolist()
                order += [indices[i] for i in pick]
        permutation = torch.randperm(len(order), generator=generator).tolist()
        return [order[i] for i in permutation]


def load_mixture(path: str | Path, media_root: str | Path | None = None) -> Mixture:
    """A records file (.jsonl / .json, ratio 1) or a mixture file (.yaml / .yml)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        records = read_records(path, media_root)
        return Mixture(records, [0] * len(records), [1.0])
    if not path.is_file():
        raise ConfigError(f"mixture file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({e})") from None
    sources = spec.get("sources") if isinstance(spec, dict) else None
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{path}: a mixture needs a non-empty 'sources' list")
    records: list[Record] = []
    entries: list[int] = []
    ratios: list[float] = []
    for k, source in enumerate(sources):
        if not isinstance(source, dict) or "path" not in source:
            raise ConfigError(f"{path}: source {k + 1} needs a 'path'")
        unknown = set(source) - {"path", "ratio", "media_root"}
        if unknown:
            raise ConfigError(f"{path}: source {k + 1} has unknown keys: {', '.join(sorted(unknown))}")
        ratio = float(source.get("ratio", 1.0))
        if ratio < 0:
            raise ConfigError(f"{path}: source {k + 1} has a negative ratio")
        file = path.parent / source["path"]
        root = path.parent / source["media_root"] if source.get("media_root") else None
        loaded = read_records(file, root)
        records += loaded
        entries += [k] * len(loaded)
        ratios.append(ratio)
    return Mixture(records, entries, ratios)
