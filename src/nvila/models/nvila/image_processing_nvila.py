"""Image -> normalised tiles, following the official preprocessing exactly; `NVILAImageProcessor` for transformers.

Owns: Dynamic-S2 tiling (square tiles at every smaller scale, an aspect-matched grid at the largest),
dynamic tiling with thumbnail, plain resize; bicubic resampling (PIL), /255, (x - mean) / std.
The tile counts always come from `geometry.image_tokens`, so the processor and the model agree.
Shapes: n tiles, s tile side in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature
from transformers.image_processing_utils import ImageProcessingMixin

from nvila.image_io import ImageInput, load_image
from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.geometry import BlockSize, ImageTokens, image_tokens, small_scale_sides

RESAMPLE = Image.Resampling.BICUBIC


def _crop_grid(image: Image.Image, cols: int, rows: int, tile: int) -> list[Image.Image]:
    """Resize to (cols*tile, rows*tile) and cut row-major into tile x tile crops."""
    resized = image.resize((cols * tile, rows * tile), RESAMPLE)
    return [
        resized.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile)) for r in range(rows) for c in range(cols)
    ]


def image_to_tiles(
    image: Image.Image, cfg: NVILAConfig, *, single_image: bool = True
) -> tuple[list[Image.Image], ImageTokens]:
    """Cut an RGB image into the tiles the tower sees, in the official order.

    Dynamic-S2: the smaller square scales first (1, 4 tiles at 448/896), then the largest scale's grid.
    Dynamic tiling: the grid's tiles, then a thumbnail when there is more than one tile.
    """
    tokens = image_tokens(*image.size, cfg, single_image=single_image)
    s = cfg.tile_size
    if tokens.vit_tiles == 1:
        return [image.resize((s, s), RESAMPLE)], tokens
    cols, rows = tokens.grid
    tiles: list[Image.Image] = []
    if cfg.dynamic_s2:
        for side in small_scale_sides(cfg.s2_scales):
            tiles += _crop_grid(image, side, side, s)
        tiles += _crop_grid(image, cols, rows, s)
    else:
        tiles += _crop_grid(image, cols, rows, s)
        tiles.append(image.resize((s, s), RESAMPLE))
    return tiles, tokens


def normalize_tiles(tiles: list[Image.Image], cfg: NVILAConfig) -> torch.Tensor:
    """RGB tiles -> [n, 3, s, s] float32: x / 255, then (x - mean) / std per channel."""
    array = np.stack([np.asarray(t, dtype=np.float32) for t in tiles]) / 255.0  # [n, s, s, 3]
    mean = np.asarray(cfg.vision.image_mean, dtype=np.float32)
    std = np.asarray(cfg.vision.image_std, dtype=np.float32)
    array = (array - mean) / std
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))  # [n, 3, s, s]


class NVILAImageProcessor(ImageProcessingMixin):
    """The image processor of `NVILAProcessor`: images -> `pixel_values` [n, 3, s, s] and one block size per item.

    `image_block_sizes` is what `NVILAForConditionalGeneration.get_image_features` takes: (rows, cols) of a
    Dynamic-S2 image, None for each tile of dynamic tiling or a resized image.
    """

    model_input_names = ["pixel_values", "image_block_sizes"]

    def __init__(self, config: NVILAConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nvila_config = config

    def __call__(self, images: Sequence[ImageInput], *, single_image: bool | None = None) -> BatchFeature:
        """Tiles of every image in order; `single_image` (default: one image given) picks the full tiling."""
        single = len(images) == 1 if single_image is None else single_image
        tiles: list[Image.Image] = []
        blocks: list[BlockSize] = []
        for image in images:
            image_tiles, image_blocks, _ = self.tile(load_image(image), single_image=single)
            tiles += image_tiles
            blocks += image_blocks
        pixels = normalize_tiles(tiles, self.nvila_config) if tiles else None
        return BatchFeature({"pixel_values": pixels, "image_block_sizes": blocks})

    def tile(
        self, image: Image.Image, *, single_image: bool = True
    ) -> tuple[list[Image.Image], list[BlockSize], ImageTokens]:
        """(tiles, their block sizes, the token plan) of one RGB image (`image_to_tiles`)."""
        tiles, tokens = image_to_tiles(image, self.nvila_config, single_image=single_image)
        blocks = [tokens.block_size] if self.nvila_config.dynamic_s2 else [None] * tokens.vit_tiles
        return tiles, blocks, tokens

    def to_dict(self) -> dict[str, Any]:
        """The settings that decide the tiles (the geometry of the model's config)."""
        cfg = self.nvila_config
        return {
            "image_processor_type": type(self).__name__,
            "image_aspect_ratio": cfg.image_aspect_ratio,
            "tile_size": cfg.tile_size,
            "s2_scales": list(cfg.s2_scales),
            "min_tiles": cfg.min_tiles,
            "max_tiles": cfg.max_tiles,
            "image_mean": list(cfg.vision.image_mean),
            "image_std": list(cfg.vision.image_std),
        }
