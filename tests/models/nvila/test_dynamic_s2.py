"""Dynamic-S2 merging against loop references (tile arrangement and area resizing)."""

from __future__ import annotations

import math

import pytest
import torch

from nvila.models.nvila.dynamic_s2 import map_to_tiles, merge_scales, tiles_to_map


def loop_tiles_to_map(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    n, pp, d = tiles.shape
    p = math.isqrt(pp)
    out = torch.empty(d, rows * p, cols * p)
    for t in range(n):
        r, c = divmod(t, cols)
        for y in range(p):
            for x in range(p):
                out[:, r * p + y, c * p + x] = tiles[t, y * p + x]
    return out


def loop_area_resize(m: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Area interpolation as adaptive average pooling: cell i covers [floor(i*H/oh), ceil((i+1)*H/oh))."""
    d, h, w = m.shape
    out = torch.empty(d, out_h, out_w)
    for i in range(out_h):
        y0, y1 = (i * h) // out_h, -(-((i + 1) * h) // out_h)
        for j in range(out_w):
            x0, x1 = (j * w) // out_w, -(-((j + 1) * w) // out_w)
            out[:, i, j] = m[:, y0:y1, x0:x1].mean(dim=(1, 2))
    return out


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (3, 4), (4, 3)])
def test_tiles_to_map_matches_loop_and_inverts(rows, cols):
    tiles = torch.randn(rows * cols, 16, 5)
    fmap = tiles_to_map(tiles, rows, cols)
    assert torch.equal(fmap, loop_tiles_to_map(tiles, rows, cols))
    assert torch.equal(map_to_tiles(fmap, rows, cols), tiles)


@pytest.mark.parametrize("block", [(3, 3), (3, 4), (4, 3), (2, 6)])
def test_merge_scales_matches_loop(block):
    rows, cols = block
    scales = (448, 896, 1344)
    p, d = 4, 3
    features = torch.randn(1 + 4 + rows * cols, p * p, d)
    merged = merge_scales(features, scales, block)
    assert merged.shape == (3 * d, rows * p, cols * p)
    maps = [
        loop_tiles_to_map(features[0:1], 1, 1),
        loop_tiles_to_map(features[1:5], 2, 2),
        loop_tiles_to_map(features[5:], rows, cols),
    ]
    expected = torch.cat([loop_area_resize(m, rows * p, cols * p) for m in maps])
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-6)
    # the largest scale passes through unchanged
    assert torch.equal(merged[2 * d :], maps[2])


def test_merge_scales_rejects_wrong_tile_count():
    with pytest.raises(ValueError):
        merge_scales(torch.randn(10, 16, 3), (448, 896, 1344), (3, 4))
