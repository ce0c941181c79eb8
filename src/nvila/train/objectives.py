"""What a training step optimises, chosen by the recipe (`objective`, `pixel_loss`): the component the trainer
asks for its trained module, the items its sample stream draws, its micro-batches and their loss.

- `LanguageModelling` (`objective: lm`): next-token cross-entropy on the answers, padded or packed batches. With
  `pixel_loss > 0` the auxiliary pixel head (`pixel_loss.PixelLossModel`) adds its weighted loss as an extra term;
  with `word_loss > 0` so does the word loss of synth document pages (`word_loss`), and with `reading` weights
  the reading losses (`reading_loss`).
- `VisionHeads` (`objective: vision_heads`): the tower alone, trained by supervised heads (`vision_heads`).

Losses are sums over the micro-batch's loss terms (labelled tokens, or items); the trainer divides by the step's
global count, so gradient accumulation and data parallelism give the mean over the whole step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nvila.data.collate import TrainBatch, collate_packed, collate_padded, pack_greedy
from nvila.data.dataset import ConversationDataset
from nvila.data.mixture import Mixture
from nvila.errors import ConfigError
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor
from nvila.prompt import IGNORE_INDEX
from nvila.train.pixel_loss import PixelLossModel
from nvila.train.reading_loss import PlacedAnswer, PlacedColumn, ReadingLoss, place_answers, place_columns
from nvila.train.recipe import Recipe
from nvila.train.scene_targets import SceneTargetDataset, batch_targets
from nvila.train.vision_heads import HeadTargets, TowerWithHeads, head_batch
from nvila.train.word_loss import WordBatchTargets, word_loss_mean


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies over labelled positions. logits [b, l, v], labels [b, l]."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


@dataclass
class ObjectiveSetup:
    """What an objective is built from: the run's recipe, model, processor, data mixture and dataset."""

    recipe: Recipe
    model: NVILAForConditionalGeneration
    processor: NVILAProcessor
    mixture: Mixture
    dataset: ConversationDataset
    distributed: bool  #: more than one process


@dataclass
class MicroBatchLoss:
    """One micro-batch's loss: the objective's sum (what `loss` reports), extra terms added before backward
    (already weighted and summed), the input tokens seen, and metrics to average over the step's micro-batches."""

    loss: torch.Tensor
    tokens: int
    extra: torch.Tensor | float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


class Objective(ABC):
    """A training objective over a model: see the module docstring."""

    #: what the optimiser updates beyond the model's own parameters and the training state saves: the model
    #: itself, or a wrapper holding it and the objective's heads
    module: nn.Module
    items: Sequence[Any]  #: what the sample stream draws (the i-th item of an epoch is items[order(epoch)[i]])

    @abstractmethod
    def order(self, epoch: int) -> list[int]:
        """The item order of `epoch` (deterministic from the recipe's seed)."""

    @abstractmethod
    def batch(self, samples: list) -> Any:
        """One micro-batch from drawn items."""

    @abstractmethod
    def count(self, batch: Any) -> int:
        """The micro-batch's loss terms (labelled tokens, or items)."""

    @abstractmethod
    def loss(self, batch: Any, device: torch.device) -> MicroBatchLoss:
        """The micro-batch's summed loss (under the trainer's autocast)."""


@dataclass
class LanguageModellingBatch:
    """A micro-batch of the language-modelling objective: the model inputs, and the scene targets when the word
    or reading losses are on."""

    batch: TrainBatch
    words: WordBatchTargets | None = None
    answers: list[PlacedAnswer] = field(default_factory=list)
    columns: list[PlacedColumn] = field(default_factory=list)


class LanguageModelling(Objective):
    """Next-token loss on the answers of `dataset`; the auxiliary pixel, word and reading losses as extras when
    the recipe asks."""

    def __init__(self, setup: ObjectiveSetup) -> None:
        self.recipe, self.model, self.processor = setup.recipe, setup.model, setup.processor
        self.items, self.mixture = setup.dataset, setup.mixture
        self.pixel_weight, self.word_weight = setup.recipe.pixel_loss, setup.recipe.word_loss
        reading = setup.recipe.reading
        if self.pixel_weight > 0 and setup.distributed:
            raise ConfigError("pixel_loss trains in one process (its head is not sharded); set pixel_loss: 0")
        if reading.enabled and setup.distributed:
            raise ConfigError("reading trains in one process (its taps read unsharded weights); set its weights to 0")
        self.scene_targets = self.word_weight > 0 or reading.enabled
        self.words = self.word_weight > 0 or reading.words > 0  # the word targets, named by either loss
        self.answers = reading.reads_answers
        self.columns = reading.column > 0
        if self.scene_targets:
            centre = reading.where == "centre"
            self.items = SceneTargetDataset(
                setup.dataset,
                setup.processor,
                self.words,
                self.answers,
                centre,
                spell=reading.spell,
                question_words=reading.question_words,
                columns=self.columns,
            )
        self.reading = ReadingLoss(self.model, reading) if reading.enabled else None
        self.module = PixelLossModel(self.model) if self.pixel_weight > 0 else self.model

    def order(self, epoch: int) -> list[int]:
        return self.mixture.epoch_order(self.recipe.seed, epoch)

    def batch(self, samples: list) -> LanguageModellingBatch:
        scenes = samples if self.scene_targets else None
        if scenes is not None:
            samples = [s.sample for s in scenes]
        pad, cfg = self.processor.pad_token_id, self.processor.config
        if not self.recipe.data.packing:
            batch = collate_padded(samples, pad, cfg)
            layout = [(row, 0) for row in range(len(samples))]
        else:
            packs = pack_greedy([len(s.input_ids) for s in samples], self.recipe.data.max_length)
            batch = collate_packed([[samples[i] for i in pack] for pack in packs], pad, cfg)
            layout = [  # each sample starts where the ones before it in its pack end
                (row, start)
                for row, pack in enumerate(packs)
                for start in accumulate((len(samples[i].input_ids) for i in pack[:-1]), initial=0)
            ]
            if scenes is not None:  # the order the packs laid the samples out in
                scenes = [scenes[i] for pack in packs for i in pack]
        if scenes is None:
            return LanguageModellingBatch(batch)
        words = batch_targets(batch.input_ids, scenes, cfg.image_token_id) if self.words else None
        answers = place_answers(scenes, layout, cfg.image_token_id) if self.answers else []
        columns = place_columns(scenes, layout, cfg.image_token_id) if self.columns else []
        return LanguageModellingBatch(batch, words, answers, columns)

    def count(self, batch: LanguageModellingBatch) -> int:
        return batch.batch.n_label_tokens

    def loss(self, batch: LanguageModellingBatch, device: torch.device) -> MicroBatchLoss:
        kwargs = batch.batch.model_kwargs(device)
        labels = kwargs.pop("labels")
        tokens = int(batch.batch.input_ids.numel())
        share = self.count(batch)  # extras are weighted like the micro-batch's share of the step's labelled tokens
        extra: torch.Tensor | float = 0.0
        metrics: dict[str, float] = {}
        if self.module is self.model:
            logits = self.model(**kwargs).logits
        else:
            logits, pixel = self.module(**kwargs)
            extra = self.pixel_weight * pixel * share
            metrics["pixel_loss"] = float(pixel.detach())
        word = None if batch.words is None or self.word_weight == 0 else word_loss_mean(logits, batch.words)
        if word is not None:
            extra = extra + self.word_weight * word[0] * share
            metrics.update(word_loss=float(word[0].detach()), word_accuracy=word[1])
        read = self.reading(batch.answers, batch.words, batch.columns) if self.reading is not None else None
        if read is not None:
            extra = extra + read[0] * share
            metrics.update(read[1])
        return MicroBatchLoss(token_loss_sum(logits, labels), tokens, extra, metrics)


class VisionHeads(Objective):
    """The tower with supervised heads on the records' answers (shape/colour presence, counts, words)."""

    def __init__(self, setup: ObjectiveSetup) -> None:
        self.processor, self.seed = setup.processor, setup.recipe.seed
        self.heads = HeadTargets(setup.mixture.records)
        self.items = self.heads.items
        tower, width = setup.model.vision_tower, setup.model.nvila_config.vision.hidden_size
        self.module = TowerWithHeads(tower, width, len(self.heads.templates), len(self.heads.answers))

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.items), generator=generator).tolist()

    def batch(self, samples: list) -> tuple[torch.Tensor, ...]:
        return head_batch(samples, self.processor)

    def count(self, batch: tuple[torch.Tensor, ...]) -> int:
        return int(batch[3].numel())

    def loss(self, batch: tuple[torch.Tensor, ...], device: torch.device) -> MicroBatchLoss:
        tiles, counts, templates, answers = batch
        logits = self.module(tiles.to(device), counts, templates.to(device))
        loss = F.cross_entropy(logits.float(), answers.to(device), reduction="sum")
        return MicroBatchLoss(loss, int(tiles.shape[0]))


#: The recipe's `objective` -> its component.
OBJECTIVES: dict[str, type[Objective]] = {"lm": LanguageModelling, "vision_heads": VisionHeads}
