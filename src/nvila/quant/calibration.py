"""Calibration conversations for quantization: a records file, or `nvila synth` samples drawn in memory.

Both are encoded by the model's own processor, so calibration sequences hold the visual tokens the model will
see. The set is split into `search` samples (activation statistics, AWQ / SmoothQuant) and `heldout` samples
(quality drift only, never used by the search). Each sample is one batch of one row (no padding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nvila.data.collate import collate_padded
from nvila.data.dataset import ConversationDataset
from nvila.data.records import ROLES, read_records
from nvila.errors import ConfigError
from nvila.models.nvila.processing_nvila import EncodedSample, NVILAProcessor

log = logging.getLogger(__name__)

#: Synthetic image tasks drawn in turn when no calibration file is given (videos are left out).
SYNTH_TASKS = ("documents", "charts", "shapes")


@dataclass
class CalibrationSet:
    search: list[EncodedSample]
    heldout: list[EncodedSample]
    source: str  #: the records file, or a description of the synthetic set

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "search_samples": len(self.search), "heldout_samples": len(self.heldout)}


def from_records(
    path: str | Path, processor: NVILAProcessor, search: int, heldout: int, max_length: int, seed: int = 0
) -> CalibrationSet:
    """Samples of a LLaVA-style records file, shuffled with `seed`: the first `heldout` usable ones are held out.

    With fewer usable records than asked for, a quarter (at least one) is held out and the rest searched on.
    """
    records = read_records(path)  # refuses a missing or empty file
    order = np.random.default_rng(seed).permutation(len(records))
    dataset = ConversationDataset([records[i] for i in order], processor, max_length, overlong="skip")
    samples = []
    for index in range(len(dataset)):
        sample = dataset[index]
        if sample is not None:
            samples.append(sample)
        if len(samples) == search + heldout:
            break
    if len(samples) < 2:
        raise ConfigError(
            f"{path}: {len(samples)} usable calibration record(s) ({dataset.stats.summary()}); at least 2 are "
            "needed (one to search on, one to measure drift)"
        )
    if len(samples) < search + heldout:
        log.warning("%s: %d usable records, fewer than the %d asked for", path, len(samples), search + heldout)
        heldout = max(1, len(samples) // 4)
    return CalibrationSet(search=samples[heldout:], heldout=samples[:heldout], source=str(path))


def from_synth(processor: NVILAProcessor, search: int, heldout: int, seed: int = 0) -> CalibrationSet:
    """`nvila synth` image samples (documents, charts, shapes in turn) at the model's largest input scale.

    Search samples come from the synth "train" split and held-out ones from its "heldout" split.
    """
    from nvila.synth.writer import MAX_SIDE, MIN_SIDE, draw_sample, make_plan, to_record

    cfg = processor.config
    side = min(max(cfg.s2_scales[-1] if cfg.dynamic_s2 else cfg.tile_size, MIN_SIDE), MAX_SIDE)
    plan = make_plan(list(SYNTH_TASKS), seed=seed, image_size=side)

    def encode(split: str, index: int) -> EncodedSample:
        task = SYNTH_TASKS[index % len(SYNTH_TASKS)]
        sample, _ = draw_sample(plan, task, split, index // len(SYNTH_TASKS))
        record = to_record(sample, task, f"{task}-{index}", [""] * len(sample.images))
        messages = [{"role": ROLES[turn["from"]], "content": turn["value"]} for turn in record["conversations"]]
        return processor.encode_messages(messages, sample.images)

    return CalibrationSet(
        search=[encode("train", i) for i in range(search)],
        heldout=[encode("heldout", i) for i in range(heldout)],
        source=f"nvila synth ({', '.join(SYNTH_TASKS)}; {side} px; seed {seed})",
    )


def model_inputs(sample: EncodedSample, processor: NVILAProcessor, device: torch.device) -> dict[str, Any]:
    """Keyword arguments of `NVILAForConditionalGeneration.forward` for one sample (with its labels)."""
    return collate_padded([sample], processor.pad_token_id, processor.config).model_kwargs(device)
