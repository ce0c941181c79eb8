"""Image -> normalised tiles, following the official preprocessing exactly.

Owns: Dynamic-S2 tiling (square tiles at every smaller scale, an aspect-matched grid at the largest),
dynamic tiling with thumbnail, plain resize; bicubic resampling (PIL), /255, (x - mean) / std.
The tile counts always come from `geometry.image_tokens`, so the processor and the model agree.
Shapes: n tiles, s tile side in pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.geometry import ImageTokens, image_tokens, small_scale_sides

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
