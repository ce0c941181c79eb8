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
from nvila.synth import charts, documents
from nvila.synth.writer import write_dataset
from nvila.train.scene_targets import SceneTargetDataset, batch_targets
from nvila.train.word_loss import (
    WordBatchTargets,
    scene_text,
    token_raster,
    word_loss_mean,
    word_targets,
)

PAGE = (168, 168)  # 3 x 3 tiles of 56 px at the tests' largest scale: the page is not resized


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pages") / "ds"
    write_dataset(root, {"documents": 6, "charts": 3, "shapes": 2}, seed=5, image_size=PAGE, heldout=0, progress=False)
    return root / "train.jsonl"


def tiny_s2(tile: int = 56):
    """The tiny model on `tile` px tiles (14 px patches), S2 scales 1x, 2x, 3x the tile."""
    cfg = from_name("tiny").with_overrides({"vision": {"image_size": tile}, "s2_scales": [tile, 2 * tile, 3 * tile]})
    return random_pretrained(cfg)


def ink_outside(ink: np.ndarray, boxes) -> int:
    """Inked pixels of `ink` [h, w] bool outside every box grown by 1-2 px (0: the boxes hold all the text),
    checking that every box holds ink."""
    drawn = np.zeros_like(ink)
    for _, (x0, y0, x1, y1) in boxes:
        assert ink[max(0, int(y0)) : int(y1) + 2, max(0, int(x0)) : int(x1) + 1].any()
        drawn[max(0, int(y0) - 1) : int(y1) + 3, max(0, int(x0) - 1) : int(x1) + 2] = True
    return int((ink & ~drawn).sum())


def dark(image) -> np.ndarray:
    return np.asarray(image.convert("L")) < 128  # [h, w]


def test_word_boxes_are_the_body_words_and_text_boxes_add_the_title_first():
    scene = documents.make_document(np.random.default_rng(0), (192, 192)).scene
    ink = dark(documents.render(scene))
    body = documents.word_boxes(scene)
    assert [w for w, _ in body] == [w for line in scene["lines"] for w in line]
    title_bottom = scene["margin"] + round(scene["title_px"] * 1.4)
    assert (
        ink_outside(
            ink[title_bottom:], [(w, (x0, y0 - title_bottom, x1, y1 - title_bottom)) for w, (x0, y0, x1, y1) in body]
        )
        == 0
    )
    boxes = documents.text_boxes(scene)
    assert [w for w, _ in boxes] == scene["title"].split() + [w for w, _ in body]
    assert ink_outside(ink, boxes) == 0  # title and body: every inked pixel is in a box


@pytest.mark.parametrize("seed", range(4))  # bar and line charts
def test_a_charts_text_boxes_hold_its_values_and_labels(seed, monkeypatch):
    scene = charts.make_chart(np.random.default_rng(seed), (192, 192)).scene
    items = scene["bars"] if scene["kind"] == "bar" else scene["points"]
    boxes = charts.text_boxes(scene)
    assert [w for w, _ in boxes] == [t for item in items for t in (str(item["value"]), item["label"])]
    for (_, value), (_, label) in zip(boxes[::2], boxes[1::2]):
        assert value[3] <= scene["baseline"] <= label[1]  # values above the baseline, labels under it
    # with the bars and the line drawn in the background colour, the ink is the text and the baseline
    monkeypatch.setattr(charts, "PALETTE", dict.fromkeys(charts.PALETTE, charts.BACKGROUND))
    ink = dark(charts.render(scene))
    ink[scene["baseline"]] = False
    assert ink_outside(ink, boxes) == 0


@pytest.mark.parametrize(
    ("template", "broken", "expected"),
    [
        ("documents/title", None, "text"),
        ("charts/bar_value", None, "text"),
        ("shapes/count", None, []),
        ("documents/title", lambda s: s.pop("title"), None),
        ("documents/first_word", lambda s: s.update(title_px=True), None),
        ("charts/bar_value", lambda s: s.update(kind=["bar"]), None),
        ("charts/line_max", lambda s: s.update(px="8"), None),
    ],
)
def test_scene_text_needs_a_complete_layout(template, broken, expected):
    make = charts.make_chart if template.startswith("charts/") else documents.make_document
    scene = make(np.random.default_rng(7), (192, 192)).scene
    if broken:
        broken(scene)
    found = scene_text(template, scene)
    if expected == "text":
        assert found and all(isinstance(w, str) and len(box) == 4 for w, box in found)
    else:
        assert found == expected


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

    targets = word_targets(documents.word_boxes(scene), page, cfg, block.block_sizes[0], ids)
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
    items = SceneTargetDataset(ConversationDataset(records, processor, max_length=512), processor)
    samples = [items[i] for i in range(len(items))]
    assert sum(bool(s.words) for s in samples) == 9  # the documents and the charts; the shapes have none
    layout = [list(range(3)), list(range(3, len(samples)))] if packed else [[k] for k in range(len(samples))]
    if packed:
        batch = collate_packed([[samples[k].sample for k in row] for row in layout], processor.pad_token_id, cfg)
    else:
        batch = collate_padded([s.sample for s in samples], processor.pad_token_id, cfg)
    targets = batch_targets(batch.input_ids, samples, cfg.image_token_id)
    flat = batch.input_ids.flatten()
    assert (flat[targets.positions] == cfg.image_token_id).all()
    assert targets.token_ids.tolist() == [t for s in samples for _, t in s.words]
    # every target lands in its own sample's image tokens, at its index among them
    length, expected = batch.input_ids.shape[1], []
    for row, ks in enumerate(layout):
        image_positions = (batch.input_ids[row] == cfg.image_token_id).nonzero()[:, 0].tolist()
        before = 0
        for k in ks:
            expected += [row * length + image_positions[before + index] for index, _ in samples[k].words]
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
    items = SceneTargetDataset(ConversationDataset(records, processor, max_length=512), processor)
    bad, good = items[0], items[1]
    assert bad.sample is not None and bad.words == [] and good.words
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
        SceneTargetDataset(ConversationDataset(read_records(pages), processor, max_length=512), processor)
