"""The visual-embedding cache: keys follow the preprocessed pixels and what shapes their features, entries
are evicted least recently used first once the byte budget is exceeded, and hits / misses are counted."""

from __future__ import annotations

import torch

from nvila.engine.feature_cache import FeatureCache, media_key
from nvila.engine.media import PromptMedia
from tests.conftest import noise_image


def features(n: int, value: float = 0.0) -> torch.Tensor:
    return torch.full((n, 4), value)  # n x 16 bytes


def test_keys_follow_pixels_dtype_and_extra_fields():
    pixels = torch.randn(2, 3, 8, 8)
    assert media_key(pixels, "image", (1, 2)) == media_key(pixels.clone(), "image", (1, 2))
    assert media_key(pixels, "image", (1, 2)) != media_key(pixels, "image", (2, 1))
    assert media_key(pixels, "image", None) != media_key(pixels, "video", None)
    changed = pixels.clone()
    changed[1, 2, 7, 7] += 1e-3
    assert media_key(pixels) != media_key(changed)
    assert media_key(pixels) != media_key(pixels.double())


def test_least_recently_used_entries_go_first_within_the_byte_budget():
    cache = FeatureCache(max_bytes=5 * 16)
    cache.put("a", features(2, 1.0))
    cache.put("b", features(2, 2.0))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("c", features(2, 3.0))  # 6 rows > 5: "b" goes
    assert cache.get("b") is None and cache.get("c")[0, 0] == 3.0 and cache.get("a")[0, 0] == 1.0
    assert cache.bytes == 4 * 16 and len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)
    cache.put("huge", features(6))  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 2


def test_a_stored_view_does_not_keep_its_base_alive():
    cache = FeatureCache(max_bytes=1024)
    base = features(50)
    cache.put("part", base[:2])
    stored = cache.get("part")
    assert stored.untyped_storage().nbytes() == 2 * 16 and cache.bytes == 32


def test_prompt_media_has_one_item_per_image_and_video_with_its_token_count(small):
    model, processor = small
    cfg = processor.config
    sample = processor.encode_messages(
        [{"role": "user", "content": "<image><image><vila/video> compare"}],
        [noise_image(50, 40, seed=1), noise_image(50, 40, seed=2)],
        [[noise_image(30, 30, seed=k) for k in range(5)]],
        add_generation_prompt=True,
    )
    media = PromptMedia.from_sample(sample, cfg)
    assert [i.tokens for i in media.images] == [cfg.tokens_per_tile] * 2
    assert [i.tokens for i in media.videos] == [3 * cfg.tokens_per_tile]  # 5 frames pooled by 2 -> 3 groups
    assert len({i.key for i in media.images + media.videos}) == 3
    image_positions = sum(t == cfg.image_token_id for t in sample.input_ids)
    video_positions = sum(t == cfg.video_token_id for t in sample.input_ids)
    assert sum(i.tokens for i in media.images) == image_positions
    assert sum(i.tokens for i in media.videos) == video_positions
    single = processor.encode_messages(
        [{"role": "user", "content": "<image> what?"}], [noise_image(150, 90, seed=1)], add_generation_prompt=True
    )
    (item,) = PromptMedia.from_sample(single, cfg).images  # Dynamic-S2: one item of several tiles and scales
    assert item.block is not None and item.pixels.shape[0] > 1
    assert item.tokens == sum(t == cfg.image_token_id for t in single.input_ids)
