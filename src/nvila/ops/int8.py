"""Symmetric int8: weights per output channel (static), activations per token (dynamic, at run time).

weight [out, in] -> q = round(w / s), s = max|w_row| / 127, q in [-127, 127] (int8), s float32 [out].
activations [t, in] -> the same per row (token), computed on every forward.
The product of the int8 values is accumulated in int32 by `torch._int_mm` on CUDA (where the shapes allow:
m > 16, k and n multiples of 8), otherwise in float32 on the integer values (exact while sums stay below
2^24, within float32 rounding beyond): PyTorch's CPU `_int_mm` measured 20x slower than that at 256 tokens
(benchmarks/quant_speed.py). y = acc * s_token * s_channel.
"""

from __future__ import annotations

import torch

QMAX = 127


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[r, k] float -> (q [r, k] int8, scale [r, 1] float32) with x ~ q * scale, symmetric per row."""
    scale = x.detach().abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-8) / QMAX
    q = torch.round(x.float() / scale).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale


def int8_matmul(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """[m, k] int8 x [n, k] int8 -> [m, n] (x_q @ w_q.T) as float32."""
    m, k = x_q.shape
    if x_q.is_cuda and m > 16 and k % 8 == 0 and w_q.shape[0] % 8 == 0:
        return torch._int_mm(x_q, w_q.T).float()
    return x_q.float() @ w_q.float().T
