"""Vision-encoder pre-training with supervised heads (the `vision_heads` objective of a recipe).

For a model trained from scratch, a frozen random LLM cannot pull the tower towards useful features, and
end-to-end training learns nothing in CPU-minutes (DESIGN section 8). This objective trains the tower alone:
each (image, question template, answer) turn of the data becomes a classification — the tower's patch
features of all the image's tiles are attention-pooled with a learned query per template, and a small MLP
picks the answer among all answers seen in training. Only the tower's weights are kept afterwards.
Shapes: b images, n tokens (all tiles' patches), c tower width, k answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from nvila.data.records import Record
from nvila.errors import ConfigError
from nvila.image_io import load_image
from nvila.models.nvila.image_processing_nvila import image_to_tiles, normalize_tiles
from nvila.models.nvila.processing_nvila import NVILAProcessor
from nvila.models.nvila.vision_tower import VisionTower

log = logging.getLogger(__name__)


@dataclass
class HeadItem:
    image: str
    template: int
    answer: int


class HeadTargets:
    """(image, template, answer) items from records with one image; template and answer vocabularies."""

    def __init__(self, records: list[Record]) -> None:
        self.templates: dict[str, int] = {}
        self.answers: dict[str, int] = {}
        self.items: list[HeadItem] = []
        for record in records:
            if len(record.images) != 1 or record.videos:
                continue
            questions = [m for m in record.messages if m["role"] == "user"]
            answers = [m["content"].strip().lower() for m in record.messages if m["role"] == "assistant"]
            templates = record.meta.get("templates") or [record.meta.get("template")] * len(answers)
            for k, (question, answer) in enumerate(zip(questions, answers)):
                name = templates[k] if k < len(templates) and templates[k] else question["content"]
                t = self.templates.setdefault(str(name), len(self.templates))
                a = self.answers.setdefault(answer, len(self.answers))
                self.items.append(HeadItem(str(record.images[0]), t, a))
        if not self.items:
            raise ConfigError("vision_heads needs records with exactly one image and question/answer turns")


class TowerWithHeads(nn.Module):
    """The tower plus a per-template attention pooling and an answer classifier."""

    def __init__(self, tower: VisionTower, width: int, n_templates: int, n_answers: int) -> None:
        super().__init__()
        self.tower = tower
        self.queries = nn.Embedding(n_templates, width)
        self.attention = nn.MultiheadAttention(width, num_heads=max(1, width // 32), batch_first=True)
        self.classifier = nn.Sequential(nn.LayerNorm(2 * width), nn.Linear(2 * width, 2 * width), nn.GELU(),
                                        nn.Linear(2 * width, n_answers))  # fmt: skip

    def forward(self, tiles: torch.Tensor, tile_counts: list[int], templates: torch.Tensor) -> torch.Tensor:
        """tiles [sum tiles, 3, s, s], tiles per image, templates [b] -> answer logits [b, k]."""
        features = self.tower(tiles)  # [sum tiles, p*p, c]
        per_image = [f.flatten(0, 1) for f in features.split(tile_counts)]  # each [n_i, c]
        tokens = nn.utils.rnn.pad_sequence(per_image, batch_first=True)  # [b, n, c]
        lengths = torch.tensor([t.shape[0] for t in per_image], device=tokens.device)
        padding = torch.arange(tokens.shape[1], device=tokens.device)[None] >= lengths[:, None]  # [b, n]
        query = self.queries(templates)[:, None]  # [b, 1, c]
        pooled, _ = self.attention(query, tokens, tokens, key_padding_mask=padding)  # [b, 1, c]
        mean = (tokens * (~padding)[..., None]).sum(1) / lengths[:, None]  # [b, c]
        return self.classifier(torch.cat([pooled[:, 0], mean], dim=-1))


def head_batch(
    items: list[HeadItem], processor: NVILAProcessor
) -> tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
    """Tiles exactly as the model would see each image alone, tile counts, template ids, answer ids."""
    tiles, counts = [], []
    for item in items:
        image_tiles, _ = image_to_tiles(load_image(item.image), processor.config, single_image=True)
        tiles += image_tiles
        counts.append(len(image_tiles))
    templates = torch.tensor([i.template for i in items])
    answers = torch.tensor([i.answer for i in items])
    return normalize_tiles(tiles, processor.config), counts, templates, answers
