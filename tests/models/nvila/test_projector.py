"""Spatial-to-channel compression against a plain loop, and the projector's official layout."""

from __future__ import annotations

import pytest
import torch

from nvila.models.nvila.configuration_nvila import from_name
from nvila.models.nvila.projector import Projector, space_to_channel


def loop_space_to_channel(x: torch.Tensor, k: int) -> torch.Tensor:
    """Token (i, j) = concat over row offset a, then column offset b, of x[i*k + a, j*k + b] (zeros outside)."""
    n, h, w, c = x.shape
    oh, ow = -(-h // k), -(-w // k)
    out = torch.zeros(n, oh, ow, k * k * c)
    for i in range(oh):
        for j in range(ow):
            parts = []
            for a in range(k):
                for b in range(k):
                    r, s = i * k + a, j * k + b
                    parts.append(x[:, r, s] if r < h and s < w else torch.zeros(n, c))
            out[:, i, j] = torch.cat(parts, dim=-1)
    return out


@pytest.mark.parametrize("k,size", [(2, 4), (2, 5), (3, 6), (3, 7), (3, 8), (2, 32), (3, 32)])
def test_space_to_channel_matches_loop(k, size):
    x = torch.randn(2, size, size, 3)
    assert torch.equal(space_to_channel(x, k), loop_space_to_channel(x, k))


def test_real_size_token_counts():
    x = torch.randn(1, 32, 32, 8)
    assert space_to_channel(x, 2).shape == (1, 16, 16, 32)  # 256 tokens
    assert space_to_channel(x, 3).shape == (1, 11, 11, 72)  # 33x33 padded -> 121 tokens


def test_official_parameter_names_and_shapes():
    s2 = Projector(from_name("tiny"))
    c, h = 3 * 32, 32
    assert {k: tuple(v.shape) for k, v in s2.state_dict().items()} == {
        "layers.1.weight": (4 * c,), "layers.1.bias": (4 * c,),
        "layers.2.weight": (h, 4 * c), "layers.2.bias": (h,),
        "layers.4.weight": (h, h), "layers.4.bias": (h,),
    }  # fmt: skip
    lite = Projector(from_name("tiny-lite"))
    c = 32
    assert {k: tuple(v.shape) for k, v in lite.state_dict().items()} == {
        "layers.1.weight": (9 * c,), "layers.1.bias": (9 * c,),
        "layers.2.weight": (3 * c, 9 * c), "layers.2.bias": (3 * c,),
        "layers.4.weight": (3 * c,), "layers.4.bias": (3 * c,),
        "layers.5.weight": (h, 3 * c), "layers.5.bias": (h,),
        "layers.7.weight": (h, h), "layers.7.bias": (h,),
    }  # fmt: skip


def test_projector_output_shape():
    out = Projector(from_name("tiny-lite"))(torch.randn(3, 1024, 32))
    assert out.shape == (3, 121, 32)
