"""Dynamic-S2: merging a multi-scale tile stack into one feature map, and cutting maps into tiles.

Tiles are stored row-major (left to right, then top to bottom), as the image processor cuts them.
Shapes: r x c tile grid, p patches (or tokens) per tile side, d channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nvila.models.nvila.geometry import small_scale_sides


def tiles_to_map(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[r*c, p*p, d] row-major tiles -> [d, r*p, c*p] one feature map."""
    n, pp, d = tiles.shape
    p = int(round(pp**0.5))
    if n != rows * cols or p * p != pp:
        raise ValueError(f"cannot arrange {n} tiles of {pp} tokens as a {rows}x{cols} grid of square tiles")
    grid = tiles.reshape(rows, cols, p, p, d)  # [r, c, p, p, d]
    return grid.permute(4, 0, 2, 1, 3).reshape(d, rows * p, cols * p)  # [d, r*p, c*p]


def map_to_tiles(fmap: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[d, r*p, c*p] feature map -> [r*c, p*p, d] row-major tiles (inverse of `tiles_to_map`)."""
    d, h, w = fmap.shape
    if h % rows or w % cols or h // rows != w // cols:
        raise ValueError(f"a {h}x{w} map does not split into a {rows}x{cols} grid of square tiles")
    p = h // rows
    grid = fmap.reshape(d, rows, p, cols, p).permute(1, 3, 2, 4, 0)  # [r, c, p, p, d]
    return grid.reshape(rows * cols, p * p, d)


def merge_scales(features: torch.Tensor, scales: tuple[int, ...], block_size: tuple[int, int]) -> torch.Tensor:
    """Fuse one image's per-scale tile features into a single multi-scale map.

    features: [t, p*p, d] tower features of the image's tiles in processor order: the square scales
      (scales[i] / scales[0])^2 tiles each, then the largest scale's rows x cols grid.
    Returns [len(scales) * d, rows*p, cols*p]: every scale's map area-resized to the largest map and
    concatenated on channels (smallest scale first).
    """
    rows, cols = block_size
    maps, start = [], 0
    for side in small_scale_sides(scales):
        maps.append(tiles_to_map(features[start : start + side * side], side, side))
        start += side * side
    maps.append(tiles_to_map(features[start : start + rows * cols], rows, cols))
    if start + rows * cols != features.shape[0]:
        raise ValueError(f"expected {start + rows * cols} tiles for block size {block_size}, got {features.shape[0]}")
    size = maps[-1].shape[-2:]
    resized = [F.interpolate(m[None].float(), size=size, mode="area")[0].to(m.dtype) for m in maps]
    return torch.cat(resized, dim=0)
