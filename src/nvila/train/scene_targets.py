"""Targets a synth scene gives a training sample besides its answers: where each written word is (the word loss,
`word_loss.py`) and, for each answer read off the image, where it is written and which question tokens say where
to look (the reading losses, `reading_loss.py`).

Both are computed from the scene `nvila synth` writes into a record's `meta` (its layout numbers and text), on
the token raster of the image (`word_loss.token_raster`): records of one image whose scene writes text (a document
page, a chart) get targets; others (shapes, videos, real data) train with their answers alone. Positions are
sample positions (indices into the sample's `input_ids`); image-token indices count the sample's image tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

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
    """Where one token of an answer is read: the position that predicts it (`at`), the token, the image tokens
    where its word is written, the question's pointer tokens (its line number; with `question_words` also the
    words it shares with the image, a chart's label) among the positions the answering position sees (`seen`: its
    own turn or branch and what it may attend to before it), and the head that copies it (0: a word's first
    token, 1: its second)."""

    at: int
    token: int
    written: list[int]  #: indices among the sample's image tokens (each box's centre token, or its middle row)
    digits: list[int]  #: sample positions of the question's pointer tokens (empty: the question names none)
    seen: list[int]  #: sample positions visible at `at`, `at` included
    head: int = 0


#: The chart templates whose answer is a value written above the item the question names by its label.
VALUE_TEMPLATES = frozenset({"charts/bar_value", "charts/line_value"})


@dataclass
class SceneSample:
    """An encoded sample with its scene targets: (image-token index, token id) per written word, per answer read
    off the image an `AnswerTarget`, and per chart item (its label's image-token index, its value's)."""

    sample: EncodedSample
    words: list[tuple[int, int]] = field(default_factory=list)
    answers: list[AnswerTarget] = field(default_factory=list)
    columns: list[tuple[int, int]] = field(default_factory=list)


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


def chart_items(boxes: Sequence[TextBox]) -> list[tuple[TextBox, TextBox]]:
    """(value box, label box) of each item of a chart, from its text boxes (`charts.text_boxes`: item by item,
    the value then the label)."""
    return list(zip(boxes[0::2], boxes[1::2], strict=True))


def column_targets(
    boxes: Sequence[TextBox], size: Sequence[int], cfg: NVILAConfig, block: BlockSize
) -> list[tuple[int, int]]:
    """(label token, value token) of each item of a chart: the image-token indices of the centres of its label's
    box and of its value's (written above it, so earlier in the raster)."""
    pairs = []
    for value, label in chart_items(boxes):
        (label_at, _), (value_at, _) = word_targets([label, value], size, cfg, block, {label[0]: 0, value[0]: 0})
        pairs.append((label_at, value_at))
    return pairs


def box_tokens(box: TextBox, size: Sequence[int], cfg: NVILAConfig, block: BlockSize) -> list[int]:
    """The image tokens a text box covers along its middle row, left to right (indices among the image's)."""
    word, (x0, y0, x1, y1) = box
    points = [(word, (x, y0, x, y1)) for x in np.arange(x0 + 0.5, x1, 1.0)]
    return sorted({index for index, _ in word_targets(points, size, cfg, block, {word: 0})})


def answer_words(tokenizer, answer: str, labels: Sequence[int], at: int) -> list[tuple[str, int, int]]:
    """(word, first, end) of each word of `answer`: [first, end) the positions of its tokens among `labels`, whose
    answer run starts at `at`; [] when the labels there are not the answer's tokens (a sample cut short)."""
    ids = tokenizer(answer, add_special_tokens=False).input_ids
    if list(labels[at : at + len(ids)]) != ids:
        return []
    starts = [k for k, i in enumerate(ids) if k == 0 or tokenizer.decode([i])[:1].isspace()]
    return [
        (word, at + first, at + end)
        for word, first, end in zip(answer.split(), starts, [*starts[1:], len(ids)], strict=False)
    ]


def question_words_at(tokenizer, ids: Sequence[int], positions: Sequence[int], words: set[str]) -> list[int]:
    """The positions among `positions` whose token is part of a whole word of `words` in the text the tokens there
    spell (a word may be several tokens; "assistant" in the chat template does not hold "ant")."""
    texts = [tokenizer.decode([ids[p]]) for p in positions]
    ends = list(accumulate(len(t) for t in texts))
    spans = [m.span() for m in re.finditer(r"\w+", "".join(texts)) if m.group() in words]
    return [p for p, end, t in zip(positions, ends, texts) if any(s < end and end - len(t) < e for s, e in spans)]


def answer_targets(
    sample: EncodedSample,
    templates: Sequence[str],
    answers: Sequence[str],
    boxes: Sequence[TextBox],
    size: Sequence[int],
    cfg: NVILAConfig,
    digit_ids: frozenset[int],
    centre: bool = True,
    *,
    tokenizer=None,
    spell: bool = False,
    question_words: bool = False,
    label_values: bool = False,
) -> list[AnswerTarget]:
    """The `AnswerTarget`s of every answer of `sample` asked from a `READ_TEMPLATES` template whose first word is
    written in the image (every box holding it: a word may be written twice): the tokens along each box, or with
    `centre` the one token at each box's centre (the word loss's target). `templates` and `answers` are the
    record's, turn by turn; a sample cut short keeps its first answers, so answers pair with turns in order.

    One target per answer (its first token, head 0) unless `spell`: then every word of the answer written in the
    image gets one at its first token (head 0, the token the word loss names: the word written without a leading
    space) and one at its second (head 1). The pointers are the question's digit tokens, and with
    `question_words` the tokens of its words that are written in the image (`question_words_at`). `spell` and
    `question_words` need `tokenizer`. With `label_values` a chart value (`VALUE_TEMPLATES`) is addressed at its
    item's label, the word the question names (what `column_targets` trains the label's token to hold), not where
    the value is written."""
    ids, labels, branches, block = sample.input_ids, sample.labels, sample.branches, sample.block_sizes[0]
    prefix = branches[0][0] if branches else 0
    written_words = {box[0] for box in boxes}
    charted = label_values and not VALUE_TEMPLATES.isdisjoint(templates)  # a chart's boxes: (value, label) pairs
    addressed = {value[0]: label[0] for value, label in chart_items(boxes)} if charted else {}
    targets = []
    runs = answer_runs(labels)

    def written_at(word: str) -> list[int]:
        held = [box for box in boxes if box[0] == word]
        if centre:
            return sorted({i for i, _ in word_targets(held, size, cfg, block, {word: 0})})
        return sorted({i for box in held for i in box_tokens(box, size, cfg, block)})

    for k, ((at, _), template, answer) in enumerate(zip(runs, templates, answers)):
        first_word = answer.split()[0] if answer.split() else ""
        if template not in READ_TEMPLATES or first_word not in written_words or at == 0:
            continue
        if branches:  # a branch sees the shared prefix and itself; its question starts the branch
            start = branches[k][0]
            visible = list(range(prefix))
        else:  # a turn sees everything before it; its question follows the previous answer
            start = runs[k - 1][1] if k else 0
            visible = list(range(start))
        asked = range(start, at)
        words = set(question_words_at(tokenizer, ids, asked, written_words)) if question_words else set()
        digits = [p for p in asked if ids[p] in digit_ids or p in words]
        reads = [(at, labels[at], 0, first_word)]
        if spell:
            reads = []
            for word, first, end in answer_words(tokenizer, answer, labels, at):
                if word in written_words:
                    reads.append((first, first_token(tokenizer, word), 0, word))
                    if end - first > 1:
                        reads.append((first + 1, labels[first + 1], 1, word))
        for position, token, head, word in reads:
            seen = visible + list(range(start, position))
            where = addressed.get(word, word) if template in VALUE_TEMPLATES else word
            targets.append(AnswerTarget(position - 1, token, written_at(where), digits, seen, head))
    return targets


def digit_token_ids(tokenizer) -> frozenset[int]:
    """The ids of the tokenizer's tokens that hold a digit."""
    return frozenset(i for i in range(len(tokenizer)) if any(ch.isdigit() for ch in tokenizer.decode([i])))


class SceneTargetDataset:
    """`dataset[i]` as a `SceneSample` (None where the dataset skips record i): word targets when `words`, answer
    targets when `answers` (addressed at the word's centre token when `centre`; every token of every written word
    when `spell`, the question's written words as pointers when `question_words`, chart values at their label when
    `columns`: `answer_targets`), a chart's item columns when `columns` (`column_targets`), for records of one
    image whose scene is a synth document page or chart (`word_loss.WRITTEN`), on the Dynamic-S2 raster (or a
    single tile)."""

    def __init__(
        self,
        dataset: ConversationDataset,
        processor: NVILAProcessor,
        words: bool = True,
        answers: bool = False,
        centre: bool = True,
        *,
        spell: bool = False,
        question_words: bool = False,
        columns: bool = False,
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
        self.spell, self.question_words, self.columns = spell, question_words, columns

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
        scene, template = record.meta.get("scene"), str(record.meta.get("template", ""))
        boxes = scene_text(template, scene)
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
        if self.columns and template.startswith("charts/"):
            out.columns = column_targets(boxes, scene["size"], self.cfg, sample.block_sizes[0])
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
                tokenizer=self._tokenizer,
                spell=self.spell,
                question_words=self.question_words,
                label_values=self.columns,
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
