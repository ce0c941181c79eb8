"""Auxiliary pixel loss (recipe key `pixel_loss`): every visual token also predicts the colours it covers.

Not part of the paper's recipe. At the sizes trained on CPUs, the next-token loss alone never made the small
model's projector keep local colour: it answered the same colour for every image, and more steps on colour
questions did not move it (docs/results.md). Here a linear head reads each projector output token of an
image and predicts a g x g grid of mean pixel values (normalised RGB) over the image region the token covers
at the largest scale; the mean squared error, times `pixel_loss`, is added to the next-token loss, so
gradients ask the tower and projector to keep what the pixels show, token by token. The head is trained with
the projector's learning rate and dropped when the model is exported.
Shapes: n projector tiles, k tokens per tile side (t = k*k), h LLM width, g cells per token side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nvila.models.nvila.geometry import tiles_per_item
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration

#: Cells per token side of the predicted colour grid.
GRID = 4


def projector_pixel_tiles(
    model: NVILAForConditionalGeneration, pixel_values: torch.Tensor, block_sizes: Sequence | None
) -> torch.Tensor:
    """The pixel tiles matching the projector's input tiles of `get_image_features`, in its order.

    Dynamic-S2: the largest scale's grid of each multi-scale image (its last rows*cols tiles), or the one
    resized tile; otherwise every tile. [n_all, 3, s, s] -> [n, 3, s, s].
    """
    if not model.nvila_config.dynamic_s2:
        return pixel_values
    blocks = list(block_sizes) if block_sizes is not None else [None] * pixel_values.shape[0]
    counts = tiles_per_item(model.nvila_config, blocks, pixel_values.shape[0])
    items = pixel_values.split(counts)
    return torch.cat([item if block is None else item[-block[0] * block[1] :] for item, block in zip(items, blocks)])


def pixel_targets(tiles: torch.Tensor, token_px: int, grid: int = GRID) -> torch.Tensor:
    """[n, 3, s, s] normalised pixels -> [n, k*k, 3*g*g]: per token (row-major), its g x g mean colours.

    token_px: the side a token covers (patch size x projector group size); k = ceil(s / token_px). The
    projector zero-pads the patch map at the bottom and right to a multiple of its group, so the tile is
    zero-padded the same way, to k * token_px, before pooling.
    """
    n, _, s, _ = tiles.shape
    k, g = -(-s // token_px), grid
    if k * token_px != s:
        tiles = F.pad(tiles, (0, k * token_px - s, 0, k * token_px - s))
    pooled = F.adaptive_avg_pool2d(tiles.float(), k * g)  # [n, 3, k*g, k*g]
    cells = pooled.reshape(n, 3, k, g, k, g).permute(0, 2, 4, 1, 3, 5)  # [n, k, k, 3, g, g]
    return cells.reshape(n, k * k, 3 * g * g)


class PixelLossModel(nn.Module):
    """The model plus the colour head; `forward` returns (logits, mean squared pixel error of image tokens)."""

    def __init__(self, model: NVILAForConditionalGeneration, grid: int = GRID) -> None:
        super().__init__()
        self.model = model
        self.grid = grid
        self.head = nn.Linear(model.nvila_config.text.hidden_size, 3 * grid * grid)
        self._captured: list[torch.Tensor] = []
        model.mm_projector.register_forward_hook(lambda _m, _i, out: self._captured.append(out))

    def forward(self, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model inputs (`NVILAForConditionalGeneration.forward` keywords) -> ([b, l, v] logits, loss or None)."""
        self._captured.clear()
        logits = self.model(**kwargs).logits
        pixels = kwargs.get("pixel_values")
        if pixels is None:  # no images in this batch (videos are not supervised)
            return logits, None
        tokens = self._captured[0]  # the image call comes first in `embed`: [n, k*k, h]
        self._captured.clear()
        tiles = projector_pixel_tiles(self.model, pixels.to(tokens.device), kwargs.get("image_block_sizes"))
        cfg = self.model.nvila_config
        target = pixel_targets(tiles, cfg.vision.patch_size * cfg.downsample, self.grid)
        return logits, F.mse_loss(self.head(tokens).float(), target)
