"""One count, three places, hundreds of sizes: the processor's placeholder positions == `geometry`'s budget ==
the model's feature rows, for both geometries (Dynamic-S2 2x2, dynamic tiling 3x3), images and videos.

The presets run with 28 px tiles (2x2 patches, scales 28/56/84): the same code paths as 448 px tiles, so that
every grid of 1-12 tiles is reached by images up to a few hundred pixels and the tower costs milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import from_name
from nvila.models.nvila.geometry import MAX_ASPECT_RATIO, image_tokens, video_tokens
from nvila.models.nvila.processing_nvila import media_tensors

SMALL_TILES = {"vision": {"image_size": 28, "patch_size": 14}, "s2_scales": [28, 56, 84]}


def image_sizes(n: int, seed: int = 0) -> list[tuple[int, int]]:
    """`n` (width, height) pairs, log-uniform from 1 px to ~14 tiles a side at every aspect up to the limit,
    plus the exact tile multiples where grid choices tie."""
    rng = np.random.default_rng(seed)
    sizes = [(28 * c, 28 * r) for c in range(1, 5) for r in range(1, 5)] + [(1, 1), (1, 100), (100, 1)]
    while len(sizes) < n:
        w, h = (int(x) for x in np.exp(rng.uniform(0, np.log(400), size=2)).round())
        if max(w / h, h / w) <= MAX_ASPECT_RATIO:
            sizes.append((w, h))
    return sizes


@pytest.fixture(scope="module", params=["tiny", "tiny-lite"])
def small_tile_model(request):
    return random_pretrained(from_name(request.param).with_overrides(SMALL_TILES), seed=0)


def count(ids: list[int], token_id: int) -> int:
    return sum(t == token_id for t in ids)


@torch.inference_mode()
def test_one_image_counts_agree_over_hundreds_of_sizes(small_tile_model):
    model, processor = small_tile_model
    cfg = processor.config
    for width, height in image_sizes(300):
        sample = processor.encode_messages(
            [{"role": "user", "content": "<image>Q"}], [Image.new("RGB", (width, height))]
        )
        pixels, blocks, _, _ = media_tensors([sample], cfg)
        budget = image_tokens(width, height, cfg)
        assert pixels.shape[0] == budget.vit_tiles, (width, height)
        features = model.get_image_features(pixels, blocks).shape[0]
        assert count(sample.input_ids, cfg.image_token_id) == budget.llm_tokens == features, (width, height)


@torch.inference_mode()
def test_several_images_counts_agree(small_tile_model):
    """With several images each is one resize; the counts still agree item by item."""
    model, processor = small_tile_model
    cfg = processor.config
    sizes = image_sizes(60, seed=1)
    for pair in zip(sizes[::2], sizes[1::2]):
        images = [Image.new("RGB", size) for size in pair]
        sample = processor.encode_messages([{"role": "user", "content": "<image><image>Q"}], images)
        pixels, blocks, _, _ = media_tensors([sample], cfg)
        budget = sum(image_tokens(*size, cfg, single_image=False).llm_tokens for size in pair)
        features = model.get_image_features(pixels, blocks).shape[0]
        assert count(sample.input_ids, cfg.image_token_id) == budget == features, pair


@pytest.mark.parametrize("pool", [1, 3, 8])
@torch.inference_mode()
def test_video_counts_agree_for_every_frame_count(small_tile_model, pool):
    model, processor = small_tile_model
    cfg = processor.config
    frames = [Image.new("RGB", (40, 30), (k, k, k)) for k in range(33)]
    for n in range(1, 34):
        sample = processor.encode_messages([{"role": "user", "content": "<vila/video>Q"}], videos=[frames[:n]])
        _, _, video_pixels, frame_counts = media_tensors([sample], cfg)
        budget = video_tokens(n, cfg, pool)
        features = model.get_video_features(video_pixels, frame_counts, pool).shape[0]
        placeholders = count(sample.input_ids, cfg.video_token_id)
        assert budget.llm_tokens == features, (n, pool)
        if pool == cfg.video_pool_size:  # the processor expands with the model's own pooling
            assert placeholders == budget.llm_tokens, n
