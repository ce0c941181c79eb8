"""`ConversationDataset`: records -> tokenized samples, skipping (and counting) what cannot be used.

Owns: loading a record's media through the processor, the over-length policy (truncate the text after the
last media token, or skip), and counters of everything skipped, so a training run never crashes on one bad
sample and its log says how many were dropped and why. With `single_turns`, a record of several questions about
its media becomes one sample of single-turn branches (`nvila.models.nvila.branches`): every question is trained
as it is asked at evaluation, alone after the media, at the cost of one conversation. With `media_inline` p, a
fraction p of the records (chosen by id: the same ones every epoch) have their first question's leading
placeholders straight before the text, without the newline after them (`nvila.prompt.inline_media`).
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from nvila.data.records import Record
from nvila.errors import MediaError, PromptError
from nvila.models.nvila.processing_nvila import EncodedSample, NVILAProcessor
from nvila.prompt import IGNORE_INDEX, inline_media, single_turns

log = logging.getLogger(__name__)
OVERLONG_POLICIES = ("truncate", "skip")


@dataclass
class DatasetStats:
    """Why samples were dropped or changed: reason -> count, with a few example ids per reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, record_id: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(record_id)

    def summary(self) -> str:
        if not self.counts:
            return "no samples skipped or truncated"
        return "; ".join(
            f"{reason}: {n} (e.g. {', '.join(self.examples[reason])})" for reason, n in self.counts.items()
        )


class ConversationDataset:
    """Map-style dataset; `dataset[i]` is an `EncodedSample`, or None when record i is unusable."""

    def __init__(
        self,
        records: Sequence[Record],
        processor: NVILAProcessor,
        max_length: int,
        overlong: str = "truncate",
        single_turns: bool = False,
        media_inline: float = 0.0,
    ) -> None:
        if overlong not in OVERLONG_POLICIES:
            raise ValueError(f"overlong must be one of {OVERLONG_POLICIES}, got {overlong!r}")
        if not 0.0 <= media_inline <= 1.0:
            raise ValueError(f"media_inline is a fraction of the records, in [0, 1]; got {media_inline}")
        self.records = list(records)
        self.processor = processor
        self.max_length = max_length
        self.overlong = overlong
        self.single_turns = single_turns
        self.media_inline = media_inline
        self.stats = DatasetStats()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> EncodedSample | None:
        record = self.records[index]
        missing = [str(p) for p in record.images + record.videos if not p.is_file()]
        if missing:
            self.stats.add("missing media file", record.id)
            log.debug("%s: missing media %s", record.id, missing)
            return None
        messages = record.messages
        if self.media_inline and zlib.crc32(record.id.encode()) / 2**32 < self.media_inline:
            messages = inline_media(messages)
        branches = single_turns(messages) if self.single_turns else None
        try:
            if branches:
                sample = self.processor.encode_branches(branches, record.images, record.videos)
            else:
                sample = self.processor.encode_messages(messages, record.images, record.videos)
        except MediaError:
            self.stats.add("unreadable media", record.id)
            return None
        except PromptError:
            self.stats.add("placeholder / message error", record.id)
            return None
        return self._fit(sample, record.id)

    def _fit(self, sample: EncodedSample, record_id: str) -> EncodedSample | None:
        n = len(sample.input_ids)
        if n <= self.max_length:
            return sample
        if sample.branches:
            return self._fit_branches(sample, record_id)
        media_ids = {self.processor.config.image_token_id, self.processor.config.video_token_id}
        last_media = max((i for i, t in enumerate(sample.input_ids) if t in media_ids), default=-1)
        answer_left = any(label != IGNORE_INDEX for label in sample.labels[: self.max_length])
        if self.overlong == "skip" or last_media >= self.max_length or not answer_left:
            self.stats.add(f"longer than max_length {self.max_length} (skipped)", record_id)
            return None
        self.stats.add(f"longer than max_length {self.max_length} (truncated)", record_id)
        # every media field stays: the cut falls after the last media token, so all media keep their positions
        return dataclasses.replace(
            sample, input_ids=sample.input_ids[: self.max_length], labels=sample.labels[: self.max_length]
        )

    def _fit_branches(self, sample: EncodedSample, record_id: str) -> EncodedSample | None:
        """The branches that fit whole (the shared prefix holds the media); skipped when none does."""
        kept = [(start, end) for start, end in sample.branches if end <= self.max_length]
        if self.overlong == "skip" or not kept:
            self.stats.add(f"longer than max_length {self.max_length} (skipped)", record_id)
            return None
        self.stats.add(f"longer than max_length {self.max_length} (branches dropped)", record_id)
        end = kept[-1][1]
        return dataclasses.replace(sample, input_ids=sample.input_ids[:end], labels=sample.labels[:end], branches=kept)
