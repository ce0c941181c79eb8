"""Auxiliary word loss (recipe key `word_loss`): image tokens where a word is written also predict that word.

Not part of the paper's recipe. The small model's visual tokens hold a word where it is drawn, yet questions
about words alone never taught the LLM to name it (docs/results.md, "Reading and the clock"): one answer per
page is one example of one of 211 words. Here every word an `nvila synth` scene writes is a target (a document
page's title and body words, a chart's values and labels): the LLM's own logits at the image token holding the
word's centre (at the largest Dynamic-S2 scale, where the image's tokens form one raster) are scored against
the word's first text token, so each page gives ~50 examples of the word -> token mapping, through the same
head that writes answers. Records of other tasks (shapes, videos, real data) carry no targets and only their
next-token loss; `scene_targets.SceneTargetDataset` computes the targets of each sample and
`scene_targets.batch_targets` places them in a batch. Shapes: b rows, l tokens per row, v vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.geometry import BlockSize
from nvila.synth import TextBox, charts, documents

#: The layout numbers of a page scene that its word boxes are computed from (`documents.layout`).
PAGE_NUMBERS = ("margin", "title_px", "body_px", "line_height", "top")
#: The layout numbers of a chart scene that its text boxes are computed from (`charts.layout`).
CHART_NUMBERS = ("px", "left", "right", "top", "baseline")


def token_raster(cfg: NVILAConfig, block: BlockSize) -> tuple[int, int]:
    """(rows, cols) of the token raster an image's features form: the largest scale's grid of tiles (one
    resized tile when `block` is None), each tile ceil(patches / group) tokens per side."""
    side = -(-cfg.vision.patches_per_side // cfg.downsample)
    rows, cols = block if block is not None else (1, 1)
    return rows * side, cols * side


def word_targets(
    boxes: Sequence[TextBox], size: Sequence[int], cfg: NVILAConfig, block: BlockSize, token_id: dict[str, int]
) -> list[tuple[int, int]]:
    """(image token index, token id) of every text box of an image of `size` (width, height) px: the token whose
    cell holds the box's centre once the image is resized to the tile grid, as the processor resizes it (a tile's
    last token row and column may cover the projector's zero padding, so cells are found tile by tile)."""
    width, height = size
    grid_rows, grid_cols = block if block is not None else (1, 1)
    rows, cols = token_raster(cfg, block)
    side, tile, cell = rows // grid_rows, cfg.tile_size, cfg.vision.patch_size * cfg.downsample

    def token(position: float, page: int, tiles: int) -> int:
        """The raster index along one axis of an image coordinate (px)."""
        resized = min(max(position, 0.0), page - 1e-6) * tiles * tile / page
        index = min(tiles - 1, int(resized // tile))
        return index * side + min(side - 1, int((resized - index * tile) // cell))

    targets = []
    for word, (x0, y0, x1, y1) in boxes:
        row, col = token((y0 + y1) / 2, height, grid_rows), token((x0 + x1) / 2, width, grid_cols)
        targets.append((row * cols + col, token_id[word]))
    return targets


def first_token(tokenizer, word: str) -> int:
    """The id of the first text token of `word` (written without a leading space, as an answer starts)."""
    return tokenizer(word, add_special_tokens=False).input_ids[0]


def _is_number(value: object, kind: type | tuple[type, ...] = (int, float)) -> bool:
    """Whether `value` is of `kind` and not a bool (which Python counts as an int)."""
    return isinstance(value, kind) and not isinstance(value, bool)


def _has_numbers(scene: dict, names: Sequence[str]) -> bool:
    """Whether `scene` has a positive [width, height] size and a number (not a bool) under each name."""
    size = scene.get("size")
    sized = isinstance(size, list | tuple) and len(size) == 2 and all(_is_number(v, int) and v > 0 for v in size)
    return sized and all(_is_number(scene.get(k)) for k in names)


def is_page_layout(scene: object) -> bool:
    """Whether `scene` holds what `documents.text_boxes` reads: the page size, layout numbers, a title and lines of
    words."""
    if not isinstance(scene, dict) or not _has_numbers(scene, PAGE_NUMBERS):
        return False
    lines, title = scene.get("lines"), scene.get("title")
    return (
        isinstance(title, str)
        and isinstance(lines, list)
        and all(isinstance(line, list) and all(isinstance(w, str) and w for w in line) for line in lines)
    )


def is_chart_layout(scene: object) -> bool:
    """Whether `scene` holds what `charts.text_boxes` reads: the chart size, layout numbers and its labelled
    values (bars or points)."""
    if not isinstance(scene, dict) or not _has_numbers(scene, CHART_NUMBERS):
        return False
    kind = scene.get("kind")
    items = scene.get("bars") if kind == "bar" else scene.get("points") if kind == "line" else None
    return (
        isinstance(items, list)
        and len(items) > 0
        and all(
            isinstance(i, dict) and isinstance(i.get("label"), str) and i["label"] and _is_number(i.get("value"), int)
            for i in items
        )
    )


#: Template prefix -> (layout check, text boxes) of the `nvila synth` scenes whose written text has targets.
WRITTEN = {
    "documents/": (is_page_layout, documents.text_boxes),
    "charts/": (is_chart_layout, charts.text_boxes),
}


def scene_text(template: str, scene: object) -> list[TextBox] | None:
    """The text boxes of a synth scene asked from `template`: [] when its task writes no text (or it is not a synth
    record), None when the task writes text but the scene lacks the layout to place it."""
    for prefix, (complete, boxes) in WRITTEN.items():
        if template.startswith(prefix):
            return boxes(scene) if complete(scene) else None
    return []


@dataclass
class WordBatchTargets:
    """The batch's word targets: positions into its flattened [b * l] tokens, and the token ids to predict."""

    positions: torch.Tensor  #: [n] long
    token_ids: torch.Tensor  #: [n] long


def naming_loss(logits: torch.Tensor, token_ids: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mean cross-entropy of logits [n, v] against the token ids [n], and the share whose argmax is right."""
    logits, token_ids = logits.float(), token_ids.to(logits.device)
    return F.cross_entropy(logits, token_ids), float((logits.argmax(-1) == token_ids).float().mean())


def word_loss_mean(logits: torch.Tensor, targets: WordBatchTargets) -> tuple[torch.Tensor, float] | None:
    """Mean cross-entropy of the logits [b, l, v] at the targets' positions, and the share predicted right;
    None when the batch has no targets."""
    if targets.positions.numel() == 0:
        return None
    return naming_loss(logits.flatten(0, 1)[targets.positions.to(logits.device)], targets.token_ids)
