"""The word loss's targets sit on the image tokens where the words are drawn, and it trains with the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nvila.cli import main
from nvila.data.collate import collate_packed, collate_padded
from nvila.data.dataset import ConversationDataset
from nvila.data.records import read_records
from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import from_name
from nvila.synth import documents
from nvila.synth.writer import write_dataset
from nvila.train.word_loss import (
    WordBatchTargets,
    WordTargetDataset,
    batch_targets,
    token_raster,
    word_loss_mean,
    word_targets,
)

PAGE = (168, 168)  # 3 x 3 tiles of 56 px at the tests' largest scale: the page is not resized


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pages") / "ds"
    write_dataset(root, {"documents": 6, "shapes": 2}, seed=5, image_size=PAGE, heldout=0, progress=False)
    return root / "train.jsonl"


def tiny_s2(tile: int = 56):
    """The tiny model on `tile` px tiles (14 px patches), S2 scales 1x, 2x, 3x the tile."""
    cfg = from_name("tiny").with_overrides({"vision": {"image_size": tile}, "s2_scales": [tile, 2 * tile, 3 * tile]})
    return random_pretrained(cfg)


def test_word_boxes_cover_the_ink_of_each_word_and_nothing_between_lines():
    scene = documents.make_document(np.random.default_rng(0), (192, 192)).scene
    ink = np.asarray(documents.render(scene).convert("L")) < 128  # [h, w]
    boxes = documents.word_boxes(scene)
    assert [w for w, _ in boxes] == [w for line in scene["lines"] for w in line]
    for _, (x0, y0, x1, y1) in boxes:
        assert ink[int(y0) : int(y1) + 2, int(x0) : int(x1)].any()
    drawn = np.zeros_like(ink)
    for _, (x0, y0, x1, y1) in boxes:
        drawn[max(0, int(y0) - 1) : int(y1) + 3, max(0, int(x0) - 1) : int(x1) + 2] = True
    title_bottom = scene["margin"] + round(scene["title_px"] * 1.4)
    assert not (ink & ~drawn)[title_bottom:].any()  # below the title, every inked pixel is inside a word's box


@pytest.mark.parametrize("tile", [56, 70])  # 4 patches of 14 px (2 tokens a side), or 5 (3 tokens, one padded)
def test_targets_are_the_tokens_whose_cells_hold_the_word_centres(tile):
    _, processor = tiny_s2(tile)
    cfg = processor.config
    page = (3 * tile, 3 * tile)  # the largest scale's 3 x 3 grid: the page is not resized
    scene = documents.make_document(np.random.default_rng(1), page).scene
    ids = {w: k for k, w in enumerate(documents.VOCABULARY)}
    block = processor.encode_messages([{"role": "user", "content": "<image>\nx"}], [documents.render(scene)])
    rows, cols = token_raster(cfg, block.block_sizes[0])
    side, cell = rows // 3, cfg.vision.patch_size * cfg.downsample
    assert rows * cols == 9 * cfg.tokens_per_tile

    def span(index: int) -> tuple[int, int]:
        """The page px a raster index covers along one axis (a tile's last token stops at the tile's edge)."""
        start = index // side * tile + index % side * cell
        return start, min(start + cell, (index // side + 1) * tile)

    targets = word_targets(scene, cfg, block.block_sizes[0], ids)
    assert len(targets) == len(documents.word_boxes(scene))
    for (index, token), (word, (x0, y0, x1, y1)) in zip(targets, documents.word_boxes(scene)):
        (top, bottom), (left, right) = span(index // cols), span(index % cols)
        assert token == ids[word]
        assert left <= (x0 + x1) / 2 < right and top <= (y0 + y1) / 2 < bottom


@pytest.mark.parametrize("packed", [False, True])
def test_batch_positions_are_the_image_tokens_of_each_sample(pages, packed):
    _, processor = tiny_s2()
    cfg = processor.config
    records = read_records(pages)
    items = WordTargetDataset(ConversationDataset(records, processor, max_length=512), processor)
    samples = [items[i] for i in range(len(items))]
    assert sum(bool(s.targets) for s in samples) == 6  # the documents; the shapes have none
    layout = [list(range(3)), list(range(3, len(samples)))] if packed else [[k] for k in range(len(samples))]
    if packed:
        batch = collate_packed([[samples[k].sample for k in row] for row in layout], processor.pad_token_id, cfg)
    else:
        batch = collate_padded([s.sample for s in samples], processor.pad_token_id, cfg)
    targets = batch_targets(batch.input_ids, samples, cfg.image_token_id)
    flat = batch.input_ids.flatten()
    assert (flat[targets.positions] == cfg.image_token_id).all()
    assert targets.token_ids.tolist() == [t for s in samples for _, t in s.targets]
    # every target lands in its own sample's image tokens, at its index among them
    length, expected = batch.input_ids.shape[1], []
    for row, ks in enumerate(layout):
        image_positions = (batch.input_ids[row] == cfg.image_token_id).nonzero()[:, 0].tolist()
        before = 0
        for k in ks:
            expected += [row * length + image_positions[before + index] for index, _ in samples[k].targets]
            before += samples[k].sample.input_ids.count(cfg.image_token_id)
    assert targets.positions.tolist() == expected


@pytest.mark.parametrize(
    "broken",
    [
        lambda scene: scene.pop("top"),
        lambda scene: scene.update(lines="body text"),
        lambda scene: scene.update(lines=[["word", ""]]),
        lambda scene: scene.update(size=[0, 168]),
    ],
)
def test_a_page_scene_without_its_layout_trains_without_targets_and_is_counted(pages, broken):
    _, processor = tiny_s2()
    records = [r for r in read_records(pages) if r.meta["template"].startswith("documents/")][:2]
    broken(records[0].meta["scene"])
    items = WordTargetDataset(ConversationDataset(records, processor, max_length=512), processor)
    bad, good = items[0], items[1]
    assert bad.sample is not None and bad.targets == [] and good.targets
    assert list(items.stats.counts.values()) == [1] and records[0].id in items.stats.summary()


def test_loss_is_the_cross_entropy_at_the_targets_and_none_without_them():
    logits = torch.randn(2, 5, 7, requires_grad=True)
    targets = WordBatchTargets(torch.tensor([1, 8]), torch.tensor([3, 4]))
    loss, accuracy = word_loss_mean(logits, targets)
    expected = torch.nn.functional.cross_entropy(torch.stack([logits[0, 1], logits[1, 3]]), torch.tensor([3, 4]))
    assert torch.allclose(loss, expected)
    assert accuracy == float((logits[0, 1].argmax() == 3).float() + (logits[1, 3].argmax() == 4).float()) / 2
    assert word_loss_mean(logits, WordBatchTargets(torch.zeros(0, dtype=torch.long), torch.zeros(0))) is None


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("packing", [False, True])
def test_a_run_with_word_loss_lowers_it(make_recipe, pages, packing):
    path = make_recipe("words", max_steps=12, word_loss=1.0, data__train=str(pages), data__packing=packing)
    assert main(["train", "--recipe", path]) == 0
    curve = [row["word_loss"] for row in rows(Path(path).parent / "words")]
    assert len(curve) == 12 and all(math.isfinite(x) for x in curve)
    assert sum(curve[-3:]) < 0.9 * sum(curve[:3])


@pytest.mark.parametrize("changes", [{"word_loss": -1.0}, {"word_loss": 1.0, "objective": "vision_heads"}])
def test_bad_word_loss_settings_are_refused(make_recipe, changes):
    from nvila.train.recipe import load_recipe

    with pytest.raises(ConfigError, match="word_loss"):
        load_recipe(make_recipe("bad", **changes))


def test_word_loss_refuses_dynamic_tiling(pages):
    _, processor = random_pretrained("tiny-lite")
    with pytest.raises(ConfigError, match="word_loss"):
        WordTargetDataset(ConversationDataset(read_records(pages), processor, max_length=512), processor)
