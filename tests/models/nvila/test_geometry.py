"""Token arithmetic against an independent brute-force reading of DESIGN 3.1-3.2."""

from __future__ import annotations

import itertools

import pytest

from nvila.errors import MediaError
from nvila.models.nvila.configuration_nvila import from_name
from nvila.models.nvila.geometry import closest_grid, image_tokens, video_tokens


def reference_grid(width: int, height: int, lo: int, hi: int, tile: int) -> tuple[int, int]:
    """Closest aspect ratio wins; among equally close grids the largest one whose area the image covers by
    more than half replaces the smallest."""
    grids = [(c, r) for c in range(1, hi + 1) for r in range(1, hi + 1) if lo <= c * r <= hi]
    diffs = {g: abs(width / height - g[0] / g[1]) for g in grids}
    best = min(diffs.values())
    tied = sorted((g for g in grids if diffs[g] == best), key=lambda g: g[0] * g[1])
    covered = [g for g in tied[1:] if width * height > 0.5 * tile * tile * g[0] * g[1]]
    return covered[-1] if covered else tied[0]


SIZES = sorted(
    set(itertools.product([1, 14, 100, 300, 448, 640, 896, 1000, 1344, 1920, 2688, 4000], repeat=2))
    | {(1344, 896), (1920, 1080), (448, 448), (896, 896), (1080, 1920), (5000, 60), (60, 5000)}
)


@pytest.mark.parametrize("preset", ["nvila-8b", "nvila-lite-8b"])
def test_grid_and_tokens_match_reference_for_many_sizes(preset):
    cfg = from_name(preset)
    for w, h in SIZES:
        if max(w / h, h / w) > 100:
            continue
        t = image_tokens(w, h, cfg)
        if preset == "nvila-8b":
            cols, rows = reference_grid(w, h, 9, 12, 448)
            assert t.grid == (cols, rows), (w, h)
            assert t.block_size == (rows, cols)
            assert t.vit_tiles == 1 + 4 + cols * rows
            assert t.llm_tokens == 256 * cols * rows
            assert 2304 <= t.llm_tokens <= 3072
            assert t.placeholders == 1
        else:
            cols, rows = reference_grid(w, h, 1, 12, 448)
            n = cols * rows + (1 if cols * rows > 1 else 0)
            assert t.grid == (cols, rows), (w, h)
            assert (t.vit_tiles, t.llm_tokens, t.placeholders) == (n, 121 * n, n)


def test_paper_sizes():
    s2, lite = from_name("nvila-8b"), from_name("nvila-lite-8b")
    assert image_tokens(1344, 896, s2).grid == (4, 3)
    assert image_tokens(1344, 896, s2).vit_tiles == 17  # the official reference: 1 + 4 + 12 tiles
    assert image_tokens(1344, 896, lite).vit_tiles == 7  # 3x2 + thumbnail
    assert image_tokens(448, 448, s2).grid == (3, 3)
    assert image_tokens(448, 448, lite).vit_tiles == 1


def test_ties_prefer_larger_grid_only_when_image_covers_half():
    # a square image ties between 1x1, 2x2 and 3x3: a small image keeps 1x1, a large one takes 3x3
    assert closest_grid(100, 100, 1, 12, 448) == (1, 1)
    assert closest_grid(2000, 2000, 1, 12, 448) == (3, 3)
    assert closest_grid(700, 700, 1, 12, 448) == (2, 2)


def test_several_images_are_one_tile_each():
    for preset in ("nvila-8b", "nvila-lite-8b"):
        cfg = from_name(preset)
        t = image_tokens(1920, 1080, cfg, single_image=False)
        assert (t.grid, t.vit_tiles, t.llm_tokens, t.block_size) == ((1, 1), 1, cfg.tokens_per_tile, None)


def test_tokens_per_tile():
    assert from_name("nvila-8b").tokens_per_tile == 256
    assert from_name("nvila-lite-8b").tokens_per_tile == 121
    assert from_name("nvila-8b").mm_hidden_size == 3 * 1152


def test_video_tokens_pool_and_budget():
    video = from_name("nvila-8b-video")
    v = video_tokens(256, video)
    assert (v.vit_tiles, v.pooled_frames, v.llm_tokens, v.llm_tokens_unpooled) == (256, 32, 8192, 65536)
    assert video_tokens(10, video, pool_size=4).pooled_frames == 3  # 4 + 4 + 2
    assert video_tokens(8, from_name("nvila-8b")).llm_tokens == 8 * 256


@pytest.mark.parametrize("size", [(0, 10), (50000, 50000), (1, 10000), (10000, 1)])
def test_bad_sizes_are_refused(size):
    with pytest.raises(MediaError):
        image_tokens(*size, from_name("nvila-8b"))


def test_bad_video_counts_are_refused():
    with pytest.raises(MediaError):
        video_tokens(0, from_name("nvila-8b"))
    with pytest.raises(MediaError):
        video_tokens(8, from_name("nvila-8b"), pool_size=0)
