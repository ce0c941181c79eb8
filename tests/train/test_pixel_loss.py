"""The pixel loss's targets sit under the tokens they belong to, and its head trains with the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

import nvila
from nvila.cli import main
from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.models.nvila.image_processing_nvila import image_to_tiles, normalize_tiles
from nvila.train.pixel_loss import GRID, PixelLossModel, pixel_targets, projector_pixel_tiles

RED = (255, 0, 0)


def marked_image(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(image).rectangle(box, fill=RED)
    return image


def red_tokens(targets: torch.Tensor) -> set[tuple[int, int]]:
    """(tile, token) pairs whose mean predicted colour is clearly red (normalised: R high, G low)."""
    colours = targets.reshape(*targets.shape[:2], 3, -1).mean(-1)  # [n, t, 3]
    hits = (colours[..., 0] > 0.5) & (colours[..., 1] < 0.0)
    return {(int(a), int(b)) for a, b in hits.nonzero()}


@pytest.mark.parametrize("preset", ["tiny", "tiny-lite"])
def test_targets_follow_the_projector_tiles_and_token_order(preset):
    model, processor = random_pretrained(preset)
    cfg = processor.config
    side = cfg.tile_size * 3  # a square image at the largest scale: a 3 x 3 grid, no resize
    token_px = cfg.vision.patch_size * cfg.downsample
    # a red block exactly under one token: tile (row 1, col 2) of the grid, its token (row 0, col 1)
    x0, y0 = 2 * cfg.tile_size + token_px, cfg.tile_size
    image = marked_image((side, side), (x0, y0, x0 + token_px - 1, y0 + token_px - 1))
    tiles, tokens = image_to_tiles(image, cfg)
    assert tokens.grid == (3, 3)
    pixels = normalize_tiles(tiles, cfg)
    n_tokens = model.get_image_features(pixels, [tokens.block_size]).shape[0]
    chosen = projector_pixel_tiles(model, pixels, [tokens.block_size])
    per_side = -(-cfg.tile_size // token_px)
    assert chosen.shape[0] * per_side**2 == n_tokens  # one target per visual token
    targets = pixel_targets(chosen, token_px)
    assert targets.shape == (chosen.shape[0], per_side**2, 3 * GRID * GRID)
    assert red_tokens(targets) == {(1 * 3 + 2, 1)}


def test_padding_matches_the_projector_for_groups_that_do_not_divide_the_map():
    tiles = torch.ones(1, 3, 10, 10)  # 5 x 5 patches of 2 px grouped 3 x 3 -> 2 x 2 tokens over a padded 12 px
    targets = pixel_targets(tiles, 6, grid=3)  # [1, 4, 27]: cells of 2 px
    first = targets[0, 0].reshape(3, 3, 3)
    last = targets[0, 3].reshape(3, 3, 3)  # covers px 6..12 of a 10 px tile
    assert torch.allclose(first, torch.ones_like(first))  # fully inside the tile
    assert torch.equal(last[:, 2, :], torch.zeros(3, 3)) and torch.equal(last[:, :, 2], torch.zeros(3, 3))  # padding
    assert torch.allclose(last[:, :2, :2], torch.ones(3, 2, 2))


@pytest.mark.slow  # two training runs (~11 s); `make test-slow` and CI run it
def test_loss_is_reported_for_images_only_and_trains_the_head():
    torch.manual_seed(0)
    model, processor = random_pretrained("tiny")
    wrapped = PixelLossModel(model)
    image = marked_image((2 * processor.config.tile_size, processor.config.tile_size), (0, 0, 20, 20))
    inputs = processor("<image>\nWhat is red?", [image]).to_model_kwargs()
    optimizer = torch.optim.Adam(wrapped.head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits, loss = wrapped(**inputs)
        assert logits.shape[:2] == inputs["input_ids"].shape
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    text_only = processor("What is red?").to_model_kwargs()
    assert wrapped(**text_only)[1] is None


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]


def test_a_run_with_pixel_loss_lowers_it_exports_a_plain_model_and_resumes_only_with_it(make_recipe):
    path = make_recipe("pixels", max_steps=10, pixel_loss=1.0)
    assert main(["train", "--recipe", path]) == 0
    run = Path(path).parent / "pixels"
    curve = [row["pixel_loss"] for row in rows(run)]
    assert len(curve) == 10 and sum(curve[-3:]) < 0.7 * sum(curve[:3])
    assert all(math.isfinite(row["loss"]) for row in rows(run))
    model, _ = nvila.load(run / "model")  # the head is not exported: a plain model with all its weights
    assert not any("head" in name and "lm_head" not in name for name in model.state_dict())
    # the state holds the head: resuming it without pixel_loss (or the reverse) is refused, not silently wrong
    assert main(["train", "--recipe", path, "--resume", "pixel_loss=0", "max_steps=12"]) == 1
    plain = make_recipe("plain", max_steps=4)
    assert main(["train", "--recipe", plain, "stop_after=2"]) == 0
    assert main(["train", "--recipe", plain, "--resume", "pixel_loss=0.5"]) == 1


@pytest.mark.parametrize("changes", [{"pixel_loss": -1.0}, {"pixel_loss": 1.0, "objective": "vision_heads"}])
def test_bad_pixel_loss_settings_are_refused(make_recipe, changes):
    from nvila.train.recipe import load_recipe

    with pytest.raises(ConfigError, match="pixel_loss"):
        load_recipe(make_recipe("bad", **changes))
