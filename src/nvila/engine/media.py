"""A prompt's media as cacheable items, and their visual embeddings computed once per distinct item.

Owns: `PromptMedia.from_sample` (an encoded conversation's tiles and frames -> items: one per image item as
the model groups them, one per video, each with its token count and `media_key`; runs on the submitting
thread, so hashing stays off the scheduler) and `encode_media` (looks every item up in the `FeatureCache`,
encodes all misses of a prefill batch in one vision pass per kind, stores them). Does not own the vision
model (`NVILAForConditionalGeneration`) or the cache policy (`feature_cache`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from nvila.engine.feature_cache import FeatureCache, media_key
from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.geometry import BlockSize, tiles_per_item, tokens_per_item
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import EncodedSample, media_tensors


@dataclass
class MediaItem:
    """One image item (a Dynamic-S2 image, or one tile) or one video, preprocessed."""

    pixels: torch.Tensor  #: [tiles or frames, 3, s, s] float32, CPU
    block: BlockSize  #: Dynamic-S2 block size of an image; None for a single tile or a video
    tokens: int  #: visual embeddings it yields
    key: str


@dataclass
class PromptMedia:
    images: list[MediaItem] = field(default_factory=list)
    videos: list[MediaItem] = field(default_factory=list)

    @classmethod
    def from_sample(cls, sample: EncodedSample, config: NVILAConfig) -> PromptMedia:
        pixel_values, blocks, video_pixels, frame_counts = media_tensors([sample], config)
        media = cls()
        if pixel_values is not None:
            counts = tiles_per_item(config, blocks, pixel_values.shape[0])
            for tiles, block in zip(pixel_values.split(counts), blocks):
                key = media_key(tiles, "image", block)
                media.images.append(MediaItem(tiles, block, tokens_per_item(config, block), key))
        if video_pixels is not None:
            pool = config.video_pool_size
            for frames in video_pixels.split(frame_counts):
                groups = -(-frames.shape[0] // pool)
                key = media_key(frames, "video", pool)
                media.videos.append(MediaItem(frames, None, groups * config.tokens_per_tile, key))
        return media


def _resolve(
    items: list[MediaItem],
    cache: FeatureCache,
    encode: Callable[[list[MediaItem]], torch.Tensor],
    found: dict[str, torch.Tensor],
) -> None:
    """Put every item's features into `found`: from the cache, else from one `encode(missing items)` call."""
    missing: dict[str, MediaItem] = {}
    for item in items:
        if item.key in found or item.key in missing:
            continue
        cached = cache.get(item.key)
        if cached is None:
            missing[item.key] = item
        else:
            found[item.key] = cached
    if not missing:
        return
    todo = list(missing.values())
    for item, features in zip(todo, encode(todo).split([i.tokens for i in todo])):
        found[item.key] = features
        cache.put(item.key, features)


def encode_media(
    model: NVILAForConditionalGeneration, cache: FeatureCache, prompts: list[PromptMedia]
) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
    """(image features [tokens, h] | None, video features [tokens, h] | None) of each prompt, in prompt order.

    Hits and misses are counted once per distinct item of the batch.
    """
    device = model.device

    def encode_images(items: list[MediaItem]) -> torch.Tensor:
        pixels = torch.cat([i.pixels for i in items]).to(device)
        return model.get_image_features(pixels, [i.block for i in items])

    def encode_videos(items: list[MediaItem]) -> torch.Tensor:
        frames = torch.cat([i.pixels for i in items]).to(device)
        return model.get_video_features(frames, [i.pixels.shape[0] for i in items])

    found: dict[str, torch.Tensor] = {}
    _resolve([i for p in prompts for i in p.images], cache, encode_images, found)
    _resolve([i for p in prompts for i in p.videos], cache, encode_videos, found)

    def joined(items: list[MediaItem]) -> torch.Tensor | None:
        return torch.cat([found[i.key] for i in items]) if items else None

    return [(joined(p.images), joined(p.videos)) for p in prompts]
