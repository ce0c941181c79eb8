"""Targets a synth scene gives a training sample besides its answers: where each written word is (the word loss,
`word_loss.py`) and, for each answer read off the image, where it is written and which question tokens say where
to look (the reading losses, `reading_loss.py`).

Both are computed from the scene `nvila synth` writes into a record's `meta` (its layout numbers and text), on
the token raster of the image (`word_loss.token_raster`): records of one image whose scene writes text (a document
page, a chart) get targets; others (shapes, videos, real data) train with their answers alone. Positions are
sample positions (indices into the sample's `input_ids`); image-token indices count the sample's image tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nvila.data.dataset import ConversationDataset
from nvila.errors import ConfigError
from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.geometry import BlockSize
from nvila.models.nvila.processing_nvila import EncodedSample, NVILAProcessor
from nvila.prompt import IGNORE_INDEX
from nvila.synth import TextBox
from nvila.train.word_loss import WordBatchTargets, first_token, scene_text, word_targets

#: The synth templates whose answer is copied from the image: its first word is written where the question
#: points (a line's first or last word, the title; a chart's value, or the label of its largest or smallest item).
READ_TEMPLATES = frozenset(
    {
        "documents/first_word",
        "documents/last_word",
        "documents/title",
        "charts/bar_value",
        "charts/bar_max",
        "charts/bar_min",
        "charts/line_value",
        "charts/line_max",
        "charts/line_min",
    }
)


@dataclass
class AnswerTarget:
    """Where one answer of a sample is read: the position that predicts its first token (`at`), the token, the
    image tokens where that word is written, and the question's digit tokens (its line number) among the positions
    the answering position sees (`seen`: its own turn or branch and what it may attend to before it)."""

    at: int
    token: int
    written: list[int]  #: indices among the sample's image tokens (each box's centre token, or its middle row)
    digits: list[int]  #: sample positions of the question's digit tokens (empty: the question names no number)
    seen: list[int]  #: sample positions visible at `at`, `at` included


@dataclass
class SceneSample:
    """An encoded sample with its scene targets: (image-token index, token id) per written word, and per answer
    read off the image an `AnswerTarget`."""

    sample: EncodedSample
    words: list[tuple[int, int]] = field(default_factory=list)
    answers: list[AnswerTarget] = field(default_factory=list)


def answer_runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of every run of labelled tokens (an answer), in order."""
    runs: list[tuple[int, int]] = []
    for t, label in enumerate(labels):
        if label == IGNORE_INDEX:
            continue
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t + 1)
        else:
            runs.append((t, t + 1))
    return runs


def box_tokens(box: TextBox, size: Sequence[int], cfg: NVILAConfig, block: BlockSize) -> list[int]:
    """The image tokens a text box covers along its middle row, left to right (indices among the image's)."""
    word, (x0, y0, x1, y1) = box
    points = [(word, (x, y0, x, y1)) for x in np.arange(x0 + 0.5, x1, 1.0)]
    return sorted({index for index, _ in word_targets(points, size, cfg, block, {word: 0})})


def answer_targets(
    sample: EncodedSample,
    templates: Sequence[str],
    answers: Sequence[str],
    boxes: Sequence[TextBox],
    size: Sequence[int],
    cfg: NVILAConfig,
    digit_ids: frozenset[int],
    centre: bool = True,
) -> list[AnswerTarget]:
    """The `AnswerTarget` of every answer of `sample` asked from a `READ_TEMPLATES` template whose first word is
    written in the image (every box holding it: a word may be written twice): the tokens along each box, or with
    `centre` the one token at each box's centre (the word loss's target). `templates` and `answers` are the
    record's, turn by turn; a sample cut short keeps its first answers, so answers pair with turns in order."""
    ids, labels, branches, block = sample.input_ids, sample.labels, sample.branches, sample.block_sizes[0]
    prefix = branches[0][0] if branches else 0
    targets = []
    runs = answer_runs(labels)
    for k, ((at, _), template, answer) in enumerate(zip(runs, templates, answers)):
        word = answer.split()[0] if answer.split() else ""
        held = [box for box in boxes if box[0] == word]
        if template not in READ_TEMPLATES or not held or at == 0:
            continue
        if centre:
            written = sorted({i for i, _ in word_targets(held, size, cfg, block, {word: 0})})
        else:
            written = sorted({i for box in held for i in box_tokens(box, size, cfg, block)})
        if branches:  # a branch sees the shared prefix and itself; its question starts the branch
            start = branches[k][0]
            seen = list(range(prefix)) + list(range(start, at))
        else:  # a turn sees everything before it; its question follows the previous answer
            start = runs[k - 1][1] if k else 0
            seen = list(range(at))
        digits = [p for p in range(start, at) if ids[p] in digit_ids]
        targets.append(AnswerTarget(at - 1, labels[at], written, digits, seen))
    return targets


def digit_token_ids(tokenizer) -> frozenset[int]:
    """The ids of the tokenizer's tokens that hold a digit."""
    return frozenset(i for i in range(len(tokenizer)) if any(ch.isdigit() for ch in tokenizer.decode([i])))


class SceneTargetDataset:
    """`dataset[i]` as a `SceneSample` (None where the dataset skips record i): word targets when `words`, answer
    targets when `answers` (addressed at the word's centre token when `centre`, `answer_targets`), for records of
    one image whose scene is a synth document page or chart (`word_loss.WRITTEN`), on the Dynamic-S2 raster (or a
    single tile)."""

    def __init__(
        self,
        dataset: ConversationDataset,
        processor: NVILAProcessor,
        words: bool = True,
        answers: bool = False,
        centre: bool = True,
    ) -> None:
        cfg = processor.config
        if not cfg.dynamic_s2 and cfg.image_aspect_ratio != "resize":
            raise ConfigError(
                "word_loss and reading need one token raster per image (Dynamic-S2, or resize); dynamic tiling "
                "(NVILA-Lite) gives every tile its own placeholder: set word_loss: 0 and the reading weights to 0"
            )
        self.dataset, self.cfg, self.words, self.answers, self.centre = dataset, cfg, words, answers, centre
        self._tokenizer = processor.tokenizer
        self._token_id: dict[str, int] = {}
        self._digits = digit_token_ids(processor.tokenizer) if answers else frozenset()

    @property
    def stats(self):
        return self.dataset.stats

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> SceneSample | None:
        sample = self.dataset[index]
        if sample is None:
            return None
        record = self.dataset.records[index]
        if len(sample.block_sizes) != 1:
            return SceneSample(sample)
        scene = record.meta.get("scene")
        boxes = scene_text(str(record.meta.get("template", "")), scene)
        if boxes is None:
            self.dataset.stats.add("synth scene without its layout (trained without scene targets)", record.id)
            return SceneSample(sample)
        if not boxes:
            return SceneSample(sample)
        out = SceneSample(sample)
        if self.words:
            for word, _ in boxes:
                if word not in self._token_id:
                    self._token_id[word] = first_token(self._tokenizer, word)
            out.words = word_targets(boxes, scene["size"], self.cfg, sample.block_sizes[0], self._token_id)
        templates = record.meta.get("templates")
        if self.answers and isinstance(templates, list):
            out.answers = answer_targets(
                sample,
                [str(t) for t in templates],
                record.answers,
                boxes,
                scene["size"],
                self.cfg,
                self._digits,
                self.centre,
            )
        return out


def batch_targets(input_ids: torch.Tensor, samples: Sequence[SceneSample], image_token_id: int) -> WordBatchTargets:
    """Map each sample's targets to flat positions of `input_ids` [b, l]; `samples` in the order the collation
    laid them out (row by row, each row's samples left to right), so their image tokens come in that order."""
    image_positions = (input_ids.flatten() == image_token_id).nonzero()[:, 0]
    positions, token_ids, offset = [], [], 0
    for scene_sample in samples:
        n_image = sum(1 for t in scene_sample.sample.input_ids if t == image_token_id)
        for index, token in scene_sample.words:
            positions.append(int(image_positions[offset + index]))
            token_ids.append(token)
        offset += n_image
    if offset != image_positions.numel():
        raise ValueError(f"the samples hold {offset} image tokens but the batch {image_positions.numel()}")
    return WordBatchTargets(torch.tensor(positions, dtype=torch.long), torch.tensor(token_ids, dtype=torch.long))
