"""The multimodal projector: spatial-to-channel compression (k x k patches -> 1 token), then an MLP.

Module names follow the official checkpoints (`layers.N.*`; index 0 is the parameter-free downsample).
Shapes: n tiles, p patches per side, c channels in, h LLM width, k group size.
"""

from __future__ import annotations

import torch
from torch import nn

from nvila.models.nvila.configuration_nvila import NVILAConfig


def space_to_channel(x: torch.Tensor, k: int) -> torch.Tensor:
    """[n, p, p, c] -> [n, ceil(p/k), ceil(p/k), k*k*c].

    The map is zero-padded at the bottom and right to a multiple of k; each output token holds its
    k x k neighbours in (row offset, column offset, channel) order.
    """
    n, h, w, c = x.shape
    pad_h, pad_w = -h % k, -w % k
    if pad_h or pad_w:
        x = nn.functional.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # [n, h', w', c]
        h, w = h + pad_h, w + pad_w
    x = x.reshape(n, h // k, k, w // k, k, c).permute(0, 1, 3, 2, 4, 5)  # [n, h/k, w/k, k, k, c]
    return x.reshape(n, h // k, w // k, k * k * c)


class SpaceToChannel(nn.Module):
    """[n, p*p, c] patch sequence -> [n, (p/k)^2, k*k*c] token sequence."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, pp, c = x.shape
        p = int(round(pp**0.5))
        y = space_to_channel(x.reshape(n, p, p, c), self.k)  # [n, p/k, p/k, k*k*c]
        return y.reshape(n, -1, y.shape[-1])


class Projector(nn.Module):
    """`mlp_downsample` (2x2) or `mlp_downsample_3x3_fix` (3x3) projector of the official code."""

    def __init__(self, cfg: NVILAConfig) -> None:
        super().__init__()
        c, h, k = cfg.mm_hidden_size, cfg.text.hidden_size, cfg.downsample
        if k == 2:
            mlp = [nn.LayerNorm(4 * c), nn.Linear(4 * c, h), nn.GELU(), nn.Linear(h, h)]
        else:
            mlp = [
                nn.LayerNorm(9 * c),
                nn.Linear(9 * c, 3 * c),
                nn.GELU(),
                nn.LayerNorm(3 * c),
                nn.Linear(3 * c, h),
                nn.GELU(),
                nn.Linear(h, h),
            ]
        self.layers = nn.Sequential(SpaceToChannel(k), *mlp)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[n, p*p, c] tower features -> [n, ceil(p/k)^2, h] LLM embeddings."""
        return self.layers(features)
