"""Token arithmetic: how many tiles, ViT passes and LLM tokens an image or video costs.

Pure functions of a config and a size, shared by the processor (placeholder expansion), the model (its
feature-count check), `nvila tokens` and the server's limits. No torch, no PIL.

Terms: a *tile* is one `tile_size`^2 crop the tower sees; the *grid* is (w_tiles, h_tiles) at the largest
scale; the Dynamic-S2 *block size* is the same grid as (rows, cols), the official code's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nvila.errors import MediaError
from nvila.models.nvila.configuration_nvila import NVILAConfig

#: Images with more pixels than this are refused before decoding (decompression-bomb guard).
MAX_IMAGE_PIXELS = 100_000_000
#: Images longer than this many times their other side are refused (e.g. 1 x 10000).
MAX_ASPECT_RATIO = 100.0


def check_image_size(width: int, height: int) -> None:
    """Raise `MediaError` for empty, huge (> MAX_IMAGE_PIXELS) or absurdly thin images."""
    if width < 1 or height < 1:
        raise MediaError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of {MAX_IMAGE_PIXELS:,}; "
            "downscale it first"
        )
    ratio = max(width / height, height / width)
    if ratio > MAX_ASPECT_RATIO:
        raise MediaError(
            f"image is {width}x{height}, an aspect ratio of {ratio:.0f}:1, above the limit of "
            f"{MAX_ASPECT_RATIO:.0f}:1; crop it first"
        )


#: A Dynamic-S2 image's block size (rows, cols) of the largest scale; None for a single resized tile.
BlockSize = tuple[int, int] | None


def small_scale_sides(scales: Sequence[int]) -> list[int]:
    """The Dynamic-S2 scale order: the tiles per side of each square scale below the largest, smallest first
    ((448, 896, 1344) -> [1, 2]); their tiles come first in an image's tile stack, then the largest scale's grid."""
    return [scale // scales[0] for scale in scales[:-1]]


def tiles_per_item(cfg: NVILAConfig, block_sizes: Sequence[BlockSize], n_tiles: int) -> list[int]:
    """How many of `n_tiles` tiles each image item holds: with Dynamic-S2 an item is one multi-scale image
    ((rows, cols): the smaller scales' tiles + rows * cols) or one resized tile (None); otherwise every tile
    is its own item."""
    if not cfg.dynamic_s2:
        return [1] * n_tiles
    return [s2_item_tiles(cfg, block) for block in block_sizes]


def s2_item_tiles(cfg: NVILAConfig, block: BlockSize) -> int:
    """Tiles of one Dynamic-S2 item: the smaller scales' tiles + rows * cols, or 1 for a resized tile (None)."""
    if block is None:
        return 1
    return sum(side * side for side in small_scale_sides(cfg.s2_scales)) + block[0] * block[1]


def tokens_per_item(cfg: NVILAConfig, block: BlockSize) -> int:
    """Visual embeddings one image item yields: rows * cols tiles' worth for a Dynamic-S2 image, else one tile's."""
    return cfg.tokens_per_tile * (1 if block is None else block[0] * block[1])


def closest_grid(width: int, height: int, min_tiles: int, max_tiles: int, tile_size: int) -> tuple[int, int]:
    """The (w_tiles, h_tiles) grid whose aspect ratio is closest to the image's.

    Candidates are all grids with min_tiles <= w*h <= max_tiles, visited by increasing tile count (the
    official InternVL-style rule, including its candidate order). Among grids with equally close ratios
    a later (larger) one wins when the image covers more than half of its pixel area.
    """
    aspect = width / height
    area = width * height
    candidates = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    best, best_diff = (1, 1), float("inf")
    for cols, rows in sorted(candidates, key=lambda g: g[0] * g[1]):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * cols * rows:
            best = (cols, rows)
    return best


@dataclass(frozen=True)
class ImageTokens:
    """The cost of one image in a prompt."""

    grid: tuple[int, int]  #: (w_tiles, h_tiles) at the largest scale; (1, 1) for a plain resize
    vit_tiles: int  #: tower passes (tiles incl. smaller S2 scales and the thumbnail)
    llm_tokens: int  #: projector output tokens, without the per-image/per-tile separators
    placeholders: int  #: `<image>` placeholders the prompt holds for it (one per tile for tiling)
    block_size: tuple[int, int] | None  #: Dynamic-S2 (rows, cols), None when not Dynamic-S2

    @property
    def embeds_per_placeholder(self) -> int:
        return self.llm_tokens // self.placeholders


def image_tokens(width: int, height: int, cfg: NVILAConfig, *, single_image: bool = True) -> ImageTokens:
    """Token budget of a `width` x `height` image.

    Dynamic-S2 and dynamic tiling apply when the image is the prompt's only image; otherwise (several
    images) every image is one `tile_size` resize, as in the official inference code.
    """
    check_image_size(width, height)
    per_tile = cfg.tokens_per_tile
    if not single_image or cfg.image_aspect_ratio == "resize":
        return ImageTokens((1, 1), 1, per_tile, 1, None)
    if cfg.dynamic_s2:
        min_tiles = (cfg.s2_scales[-1] // cfg.s2_scales[0]) ** 2  # the largest scale as a square grid
        cols, rows = closest_grid(width, height, min_tiles, cfg.max_tiles, cfg.tile_size)
        block = (rows, cols)
        return ImageTokens((cols, rows), s2_item_tiles(cfg, block), tokens_per_item(cfg, block), 1, block)
    cols, rows = closest_grid(width, height, cfg.min_tiles, cfg.max_tiles, cfg.tile_size)
    tiles = cols * rows + (1 if cols * rows > 1 else 0)  # + thumbnail
    return ImageTokens((cols, rows), tiles, per_tile * tiles, tiles, None)


@dataclass(frozen=True)
class VideoTokens:
    """The cost of one video of `frames` sampled frames."""

    frames: int
    vit_tiles: int  #: one tower pass per frame
    llm_tokens: int  #: after temporal pooling
    llm_tokens_unpooled: int  #: what the same frames would cost without pooling
    pooled_frames: int  #: frame groups left after pooling


def video_tokens(frames: int, cfg: NVILAConfig, pool_size: int | None = None) -> VideoTokens:
    """Token budget of a video: one tile per frame, then the mean over groups of `pool_size` frames.

    A last group shorter than `pool_size` is averaged on its own (ceil division).
    """
    if frames < 1:
        raise MediaError(f"a video needs at least 1 frame, got {frames}")
    pool = cfg.video_pool_size if pool_size is None else pool_size
    if pool < 1:
        raise MediaError(f"temporal pool size must be >= 1, got {pool}")
    groups = -(-frames // pool)
    per = cfg.tokens_per_tile
    return VideoTokens(frames, frames, per * groups, per * frames, groups)
