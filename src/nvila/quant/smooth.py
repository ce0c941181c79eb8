"""W8A8 for the SigLIP vision tower, with optional SmoothQuant smoothing (Xiao et al., ICML 2023).

Per-token int8 activations lose precision when a few channels carry outliers. SmoothQuant moves part of that
range into the weights: for the linears fed by a LayerNorm, s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha)
(max|x_j| over the calibration tiles, max|W_:,j| over the group's weights); x_j / s_j is folded exactly into
the LayerNorm's weight and bias, W_:,j * s_j into the linears. Groups: layer_norm1 -> q, k, v and layer_norm2 ->
fc1 of every encoder layer (out_proj and fc2 have no foldable producer and are quantized as they are).
alpha = 0.5 is the paper's default; None skips smoothing. Then every linear of the tower becomes a
`W8A8Linear` (int8 weights per output channel, int8 activations per token, computed at run time).
Shapes: n tiles, t tokens, c channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from nvila.ops.quantized import W8A8Linear, replace_linears
from nvila.quant.folding import divide_outputs, multiply_inputs

#: SmoothQuant's migration strength alpha by default (the paper's).
DEFAULT_ALPHA = 0.5


def smooth_groups(layer: nn.Module) -> list[tuple[nn.LayerNorm, list[nn.Linear]]]:
    """(LayerNorm, the linears it feeds) of a transformers SigLIP encoder layer."""
    attn = layer.self_attn
    return [(layer.layer_norm1, [attn.q_proj, attn.k_proj, attn.v_proj]), (layer.layer_norm2, [layer.mlp.fc1])]


@torch.no_grad()
def input_maxima(tower: nn.Module, linears: Sequence[nn.Linear], pixel_batches: Sequence[torch.Tensor]) -> list:
    """max |x| per input channel of each linear over all tiles: a list of [c] float32 tensors."""
    maxima: list[torch.Tensor | None] = [None] * len(linears)

    def recorder(index: int):
        def hook(module: nn.Module, args: tuple) -> None:
            m = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0).float()  # [c]
            maxima[index] = m if maxima[index] is None else torch.maximum(maxima[index], m)

        return hook

    hooks = [linear.register_forward_pre_hook(recorder(i)) for i, linear in enumerate(linears)]
    try:
        for pixels in pixel_batches:
            tower(pixels)
    finally:
        for hook in hooks:
            hook.remove()
    return maxima


def smoothing_scale(act_max: torch.Tensor, linears: Sequence[nn.Linear], alpha: float) -> torch.Tensor:
    """SmoothQuant's s = max|x|^alpha / max|W|^(1 - alpha) per input channel ([c], float32)."""
    w_max = torch.stack([linear.weight.detach().abs().amax(dim=0).float() for linear in linears]).amax(dim=0)
    scale = act_max.clamp(min=1e-5).pow(alpha) / w_max.clamp(min=1e-5).pow(1 - alpha)
    return scale.clamp(min=1e-5)


@torch.no_grad()
def w8a8_quantize(
    tower: nn.Module, encoder_layers: Sequence[nn.Module], pixel_batches: Sequence[torch.Tensor], alpha: float | None
) -> int:
    """Smooth (when `alpha` is given) and convert every linear of `tower` to W8A8; returns how many.

    tower: called on each [n, 3, s, s] batch of `pixel_batches` to collect activation maxima;
    encoder_layers: its SigLIP encoder layers (the smoothing groups).
    """
    if alpha is not None:
        groups = [g for layer in encoder_layers for g in smooth_groups(layer)]
        maxima = input_maxima(tower, [linears[0] for _, linears in groups], pixel_batches)
        for (norm, linears), act_max in zip(groups, maxima):
            scale = smoothing_scale(act_max, linears, alpha)
            divide_outputs(norm, scale)
            multiply_inputs(linears, scale)
    names = []
    for layer in tqdm(encoder_layers, desc="W8A8 (vision tower)", unit="layer"):
        names += replace_linears(layer, lambda _, linear: W8A8Linear.from_linear(linear), skip=lambda _: False)
    return len(names)
