"""Batches for training: padded rows, or rows packed with several samples (on-the-fly sequence packing).

Packed rows restart `position_ids` at 0 for every sample and carry no attention mask: transformers then
builds a block-diagonal causal mask from the position ids, so attention never crosses samples. The first
token of every sample has no label, so no sample is trained to predict the next one's start.
Samples holding single-turn branches (`EncodedSample.branches`, `nvila.models.nvila.branches`) need more than
positions can say: a batch with any of them carries a [b, 1, l, l] additive mask instead, padded or packed.
Shapes: b rows, l tokens per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nvila.models.nvila.branches import branch_mask, branch_positions
from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.geometry import BlockSize
from nvila.models.nvila.processing_nvila import EncodedSample, media_tensors
from nvila.prompt import IGNORE_INDEX


@dataclass
class TrainBatch:
    """Model inputs and labels of one step; attention_mask is None for packed rows without branches."""

    input_ids: torch.Tensor  #: [b, l]
    labels: torch.Tensor  #: [b, l], IGNORE_INDEX where no loss
    attention_mask: torch.Tensor | None  #: [b, l] for padded rows; [b, 1, l, l] additive when samples have branches
    position_ids: torch.Tensor  #: [b, l]
    pixel_values: torch.Tensor | None  #: [n, 3, s, s] tiles in token order
    image_block_sizes: list[BlockSize]
    video_pixel_values: torch.Tensor | None  #: [f, 3, s, s] video frames in token order
    video_frame_counts: list[int]
    n_samples: int

    @property
    def n_label_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def model_kwargs(self, device: torch.device | str) -> dict:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return {
            "input_ids": move(self.input_ids),
            "labels": move(self.labels),
            "attention_mask": move(self.attention_mask),
            "position_ids": move(self.position_ids),
            "pixel_values": move(self.pixel_values),
            "image_block_sizes": self.image_block_sizes,
            "video_pixel_values": move(self.video_pixel_values),
            "video_frame_counts": self.video_frame_counts,
        }


def collate_padded(samples: Sequence[EncodedSample], pad_id: int, cfg: NVILAConfig) -> TrainBatch:
    """One sample per row, right-padded to the longest."""
    length = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    positions = torch.zeros((len(samples), length), dtype=torch.long)
    for row, s in enumerate(samples):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids)
        labels[row, :n] = torch.tensor(s.labels)
        mask[row, :n] = 1
        positions[row, :n] = torch.tensor(branch_positions(n, s.branches))
    if any(s.branches for s in samples):
        mask = branch_mask([[(len(s.input_ids), s.branches)] for s in samples], length)
    return TrainBatch(ids, labels, mask, positions, *media_tensors(samples, cfg), n_samples=len(samples))


def pack_greedy(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Group sample indices into packs of total length <= max_length, first fit, keeping each pack in order."""
    packs: list[list[int]] = []
    room: list[int] = []
    for index, n in enumerate(lengths):
        if n > max_length:
            raise ValueError(f"sample {index} has {n} tokens, more than max_length {max_length}")
        for k, free in enumerate(room):
            if n <= free:
                packs[k].append(index)
                room[k] -= n
                break
        else:
            packs.append([index])
            room.append(max_length - n)
    return packs


def collate_packed(packs: Sequence[Sequence[EncodedSample]], pad_id: int, cfg: NVILAConfig) -> TrainBatch:
    """Several samples per row; rows padded to the longest with a padding 'sample' that has no labels."""
    rows = []
    for pack in packs:
        ids, labels, positions = [], [], []
        for s in pack:
            ids += s.input_ids
            labels += [IGNORE_INDEX] + s.labels[1:]
            positions += branch_positions(len(s.input_ids), s.branches)
        rows.append((ids, labels, positions))
    length = max(len(r[0]) for r in rows)
    out_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    out_labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    out_pos = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (ids, labels, positions) in enumerate(rows):
        n = len(ids)
        out_ids[row, :n] = torch.tensor(ids)
        out_labels[row, :n] = torch.tensor(labels)
        out_pos[row, :n] = torch.tensor(positions)
        out_pos[row, n:] = torch.arange(length - n)  # padding forms its own isolated block
    samples = [s for pack in packs for s in pack]
    mask = None
    if any(s.branches for s in samples):
        mask = branch_mask([[(len(s.input_ids), s.branches) for s in pack] for pack in packs], length)
    return TrainBatch(out_ids, out_labels, mask, out_pos, *media_tensors(samples, cfg), n_samples=len(samples))
