"""Moving a per-channel scale between an op and the linears it feeds, leaving the network's function unchanged.

If `prev` produces channels h (a norm: weight (and bias) per channel; a linear: one output row per channel) and
the linears consume x = h, then dividing prev's channel j by s_j and multiplying column j of every consumer by
s_j computes the same outputs: W (h / s) * s = W h. AWQ uses this to make salient input channels larger before
rounding the weights; SmoothQuant to move activation outliers into the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


@torch.no_grad()
def divide_outputs(prev: nn.Module, scale: torch.Tensor) -> None:
    """Divide output channel j of a norm (weight [c], bias) or a linear (weight [c, in], bias [c]) by scale[j]."""
    weight = prev.weight
    weight.div_(scale.to(weight.dtype).reshape(-1, *[1] * (weight.dim() - 1)))
    bias = getattr(prev, "bias", None)
    if bias is not None:
        bias.div_(scale.to(bias.dtype))


@torch.no_grad()
def multiply_inputs(linears: Sequence[nn.Linear], scale: torch.Tensor) -> None:
    """Multiply input column j of every linear by scale[j]."""
    for linear in linears:
        linear.weight.mul_(scale.to(linear.weight.dtype)[None, :])
