"""Auxiliary reading losses (recipe block `reading`; not in the paper): supervise the three steps of answering a
question about a word the question points at ("What is the first word of line 3?") in a small LLM.

Answers alone did not teach the small model to read (docs/results.md, "Reading and the clock"): the word is
named at its image token (the word loss), yet no attention head learnt to carry "line 3" from the question to a
query that selects line 3's token row. These losses supervise that path at the position that predicts each
answer's first token (`scene_targets.AnswerTarget`):

- number (`reading.number`): head 0 of LLM layer `reading.layer - 1` attends to the question's digit tokens
  (its line number), among the positions it sees: -log of its attention mass on them;
- address (`reading.address`): head 0 of layer `reading.layer` attends to the image tokens where the answer's
  first word is written, among the sample's image tokens: -log of that mass;
- copy (`reading.copy`): what that head reads is the answer: its output alone (its attention over the sample's
  image tokens, its values, its slice of the output projection), through the LLM's final norm and LM head,
  names the answer's first token: cross-entropy;
- words (`reading.words`): the residual stream entering layer `reading.layer` (what that head's values are
  computed from), through the final norm and LM head, names every written word at its centre token (the word
  loss's targets, `word_loss.WordBatchTargets`), so the head has the word to copy: cross-entropy.

With `reading.spell` every word of an answer written in the image is read the same way at the position predicting
its first token, and head 1 of layer `reading.layer` reads its second token (a title word "Sun" is "S" "un", a
value "37" is "3" "7"); with `reading.question_words` the number head's targets also hold the question's words
that are written in the image (a chart's label). With `reading.column` a chart's value is read where its label is
written, which the question names: the last head of layer `reading.layer - 1` at each label's token attends to
the value written above it (-log of its mass there, among the image tokens the label's token sees; the column
loss), and the address and copy of a value question target the label's token (what the value is copied from),
not the value's. Each is a mean over the micro-batch's answers (or words, or columns) with targets; the
objective weights it like the word loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from nvila.errors import ConfigError
from nvila.train.recipe import ReadingSpec
from nvila.train.scene_targets import SceneSample
from nvila.train.word_loss import WordBatchTargets, naming_loss


def hidden_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states [b, l, d] a decoder layer or its attention was called with (a forward pre-hook's
    arguments: transformers passes them by keyword or first)."""
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


class AttentionTap:
    """What one attention layer was given in the last forward pass (its normed input [b, l, d], RoPE cos and sin
    [b, l, head_dim]), to score one head's query against chosen keys and read its output from them."""

    def __init__(self, attention: nn.Module) -> None:
        self.attention = attention
        self._handle = attention.register_forward_pre_hook(self._grab, with_kwargs=True)

    def _grab(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.hidden = hidden_input(args, kwargs)
        self.rope = kwargs["position_embeddings"]

    def remove(self) -> None:
        self._handle.remove()

    def _heads(self, projection: nn.Module, row: int, positions: torch.Tensor) -> torch.Tensor:
        """The projection of the tapped input at `positions` of `row`, per head: [n, heads, head_dim]."""
        return projection(self.hidden[row, positions]).view(len(positions), -1, self.attention.head_dim)

    def logits(self, head: int, row: int, at: int, keys: torch.Tensor) -> torch.Tensor:
        """Head `head`'s attention logits [k] at query position `at` of `row` over the key positions `keys` [k]."""
        attn = self.attention
        cos, sin = self.rope
        q = self._heads(attn.q_proj, row, torch.tensor([at], device=keys.device))[0, head]
        k = self._heads(attn.k_proj, row, keys)[:, head // attn.num_key_value_groups]
        q = q * cos[row, at] + rotate_half(q) * sin[row, at]
        k = k * cos[row, keys] + rotate_half(k) * sin[row, keys]
        return (k @ q) * attn.scaling

    def output(self, head: int, row: int, keys: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """What head `head` writes to the residual stream [d] when it attends to `keys` [k] of `row` with
        `weights` [k]: the weighted values through its slice of the output projection."""
        attn, d = self.attention, self.attention.head_dim
        v = self._heads(attn.v_proj, row, keys)[:, head // attn.num_key_value_groups]
        return attn.o_proj.weight[:, head * d : (head + 1) * d] @ (weights.to(v.dtype) @ v)


def mass_loss(logits: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """-log of the softmax mass of `logits` [k] on the keys where `on` [k] (bool) is true."""
    return torch.logsumexp(logits, 0) - torch.logsumexp(logits.masked_fill(~on, float("-inf")), 0)


@dataclass
class PlacedAnswer:
    """An `AnswerTarget` placed in a batch: its row, positions in that row, and its sample's image tokens."""

    row: int
    at: int
    token: int
    image: torch.Tensor  #: [k] the sample's image-token positions
    written: torch.Tensor  #: [k] bool: where the answer's first word is written
    seen: torch.Tensor  #: [s] positions the answering position sees
    digits: torch.Tensor  #: [s] bool: the question's pointer tokens among them
    head: int  #: the head of the address layer that reads it


def image_positions(scene: SceneSample, image_token_id: int) -> torch.Tensor:
    """[k] the positions of the image tokens of a scene sample's `input_ids`."""
    return torch.tensor([p for p, t in enumerate(scene.sample.input_ids) if t == image_token_id])


def place_answers(
    samples: Sequence[SceneSample], layout: Sequence[tuple[int, int]], image_token_id: int
) -> list[PlacedAnswer]:
    """The answer targets of `samples` laid out at (row, offset) each (`layout`, one pair per sample)."""
    placed = []
    for scene, (row, offset) in zip(samples, layout, strict=True):
        if not scene.answers:
            continue
        image = image_positions(scene, image_token_id)
        for a in scene.answers:
            written = torch.zeros(len(image), dtype=torch.bool)
            written[a.written] = True
            seen = torch.tensor(a.seen)
            digits = torch.isin(seen, torch.tensor(a.digits, dtype=torch.long))
            placed.append(
                PlacedAnswer(row, offset + a.at, a.token, offset + image, written, offset + seen, digits, a.head)
            )
    return placed


@dataclass
class PlacedColumn:
    """A chart item's column placed in a batch: its row, its label's position, the image-token positions the
    label's token sees (its sample's, up to and including itself) and which of them holds its value."""

    row: int
    at: int
    keys: torch.Tensor  #: [k] positions
    value: torch.Tensor  #: [k] bool


def place_columns(
    samples: Sequence[SceneSample], layout: Sequence[tuple[int, int]], image_token_id: int
) -> list[PlacedColumn]:
    """The chart columns of `samples` laid out at (row, offset) each (`layout`, one pair per sample)."""
    placed = []
    for scene, (row, offset) in zip(samples, layout, strict=True):
        if not scene.columns:
            continue
        image = offset + image_positions(scene, image_token_id)
        for label, value in scene.columns:
            keys = image[: label + 1]
            placed.append(PlacedColumn(row, int(image[label]), keys, torch.arange(label + 1) == value))
    return placed


class ReadingLoss:
    """The reading losses of a model (see the module docstring); call after each forward pass of the model."""

    def __init__(self, model: nn.Module, spec: ReadingSpec) -> None:
        llm = model.llm
        layers = llm.model.layers
        if not 0 < spec.layer < len(layers):
            raise ConfigError(f"reading.layer: {spec.layer} is not a layer after the first (the LLM has {len(layers)})")
        if spec.spell and llm.config.num_attention_heads < 2:
            raise ConfigError("reading.spell reads a word's second token with head 1: the LLM has one head")
        self.spec, self.norm, self.lm_head = spec, llm.model.norm, llm.lm_head
        self.address = AttentionTap(layers[spec.layer].self_attn)
        #: the layer before the address layer: the number head, and the column head (its last head)
        self.before = AttentionTap(layers[spec.layer - 1].self_attn) if spec.number > 0 or spec.column > 0 else None
        self.column_head = llm.config.num_attention_heads - 1
        self._entering = (
            layers[spec.layer].register_forward_pre_hook(self._enter, with_kwargs=True) if spec.words > 0 else None
        )

    def _enter(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.entering = hidden_input(args, kwargs)  # [b, l, d]

    def remove(self) -> None:
        """Stop tapping the model."""
        for tap in (self.address, self.before, self._entering):
            if tap is not None:
                tap.remove()

    def __call__(
        self,
        answers: Sequence[PlacedAnswer],
        words: WordBatchTargets | None = None,
        columns: Sequence[PlacedColumn] = (),
    ) -> tuple[torch.Tensor, dict[str, float]] | None:
        """(the weighted sum of the mean losses, metrics: each loss and the share of answers (or words, or columns)
        it gets right) over the answers, written words and chart columns of the last forward pass; None when there
        are none."""
        answers = answers if self.spec.reads_answers else []
        columns = columns if self.spec.column > 0 else []
        named = words is not None and self._entering is not None and words.positions.numel() > 0
        if not answers and not named and not columns:
            return None
        spec, device = self.spec, self.address.hidden.device
        total = torch.zeros((), device=device)
        metrics: dict[str, float] = {}

        def add(name: str, weight: float, losses: list[torch.Tensor], hits: Sequence[float]) -> None:
            nonlocal total
            if not losses:
                return
            mean = torch.stack(losses).float().mean()
            total = total + weight * mean
            metrics[f"reading_{name}_loss"] = float(mean.detach())
            metrics[f"reading_{name}_accuracy"] = sum(hits) / len(hits)

        def looked(name: str, weight: float, scored: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
            """A supervised head's loss from its (logits [k], targets bool [k]) per answer."""
            on_target = [bool(on[int(s.argmax())]) for s, on in scored]
            add(name, weight, [mass_loss(s, on.to(device)) for s, on in scored], on_target)

        looks = (
            [self.address.logits(a.head, a.row, a.at, a.image.to(device)) for a in answers]
            if spec.address or spec.copy
            else []
        )
        if spec.address > 0:
            looked("address", spec.address, [(s, a.written) for s, a in zip(looks, answers)])
        if spec.copy > 0 and answers:
            written = torch.stack(
                [
                    self.address.output(a.head, a.row, a.image.to(device), torch.softmax(s.float(), 0))
                    for s, a in zip(looks, answers)
                ]
            )
            logits = self.lm_head(self.norm(written)).float()
            wanted = torch.tensor([a.token for a in answers], device=device)
            losses = list(F.cross_entropy(logits, wanted, reduction="none"))
            add("copy", spec.copy, losses, (logits.argmax(-1) == wanted).tolist())
        if spec.number > 0:
            numbered = [a for a in answers if a.digits.any()]
            looked(
                "number",
                spec.number,
                [(self.before.logits(0, a.row, a.at, a.seen.to(device)), a.digits) for a in numbered],
            )
        if columns:
            looked(
                "column",
                spec.column,
                [(self.before.logits(self.column_head, c.row, c.at, c.keys.to(device)), c.value) for c in columns],
            )
        if named:
            at = self.entering.flatten(0, 1)[words.positions.to(device)]  # [n, d]
            loss, accuracy = naming_loss(self.lm_head(self.norm(at)), words.token_ids)
            add("words", spec.words, [loss], [accuracy])
        return total, metrics
