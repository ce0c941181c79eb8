"""AWQ scale search and folding (LLM), SmoothQuant folding and W8A8 (tower)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nvila.errors import ConfigError
from nvila.ops.quantized import AWQLinear
from nvila.quant.awq import ScaleGroup, check_group_size, decoder_inputs, qwen2_groups, search_scale
from nvila.quant.folding import divide_outputs, multiply_inputs
from nvila.quant.smooth import smooth_groups, smoothing_scale, w8a8_quantize


def outlier_calls(channels: int = 256, loud: int = 8, factor: float = 30.0) -> list:
    """Recorded calls of a linear whose input has `loud` channels `factor` times larger than the rest."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, channels, generator=g)
    x[..., torch.randperm(channels, generator=g)[:loud]] *= factor
    return [((row,), {}) for row in x]


def test_awq_beats_round_to_nearest_on_outlier_channels():
    torch.manual_seed(0)
    norm, fc = nn.LayerNorm(256), nn.Linear(256, 64)
    original = fc.weight.detach().clone()
    calls = outlier_calls()
    found = search_scale(ScaleGroup("fc", norm, [fc], fc), calls, group_size=64)
    assert torch.equal(fc.weight, original)  # the search restores the weights
    assert found.alpha > 0
    assert found.mse_awq < 0.7 * found.mse_rtn
    # folding the scale and rounding for good gives the error the search measured
    divide_outputs(norm, found.scale)
    multiply_inputs([fc], found.scale)
    quantized = AWQLinear.from_linear(fc, 64)
    with torch.no_grad():
        reference = torch.cat([x @ original.T + fc.bias for (x,), _ in calls])
        ours = torch.cat([quantized(x / found.scale) for (x,), _ in calls])
    assert float((ours - reference).pow(2).mean()) == pytest.approx(found.mse_awq, rel=1e-3)


def test_folded_scales_leave_a_gqa_decoder_layer_unchanged(tiny):
    model, _ = tiny
    layer = copy.deepcopy(model.llm.model.layers[0])
    assert layer.self_attn.num_key_value_groups == 2  # o_proj's scales are tied across query heads
    ((args, kwargs),) = decoder_inputs(model, [{"input_ids": torch.arange(5, 30)[None]}])
    with torch.no_grad():
        before = layer(*args, **kwargs)
        g = torch.Generator().manual_seed(0)
        for group in qwen2_groups(layer):
            channels = group.prev.weight.shape[0]
            scale = torch.rand(channels, generator=g) * 4 + 0.25
            divide_outputs(group.prev, scale)
            multiply_inputs(group.linears, group.to_inputs(scale))
        after = layer(*args, **kwargs)
    assert torch.allclose(before, after, atol=1e-5)


def test_group_size_errors_name_the_layers_and_a_size_that_fits(tiny):
    model, _ = tiny
    message = r"group size 128 does not divide .*mlp.down_proj \(64 -> 32\).*self_attn.q_proj \(32 -> 32\)"
    with pytest.raises(ConfigError, match=message + r".*--group-size 32 fits every layer"):
        check_group_size(model.llm, 128)
    check_group_size(model.llm, 32)


def loud_tower(tiny):
    """A copy of the tiny tower whose LayerNorms emit a few channels 40x louder (activation outliers)."""
    tower = copy.deepcopy(tiny[0].vision_tower)
    with torch.no_grad():
        for layer in tower.model.encoder.layers:
            for norm, _ in smooth_groups(layer):
                norm.weight[:3] *= 40
    return tower


def test_smoothing_is_exact_before_rounding(tiny):
    tower = loud_tower(tiny)
    tile = tiny[1].config.tile_size
    pixels = torch.randn(2, 3, tile, tile, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = tower(pixels)
        for layer in tower.model.encoder.layers:
            for norm, linears in smooth_groups(layer):
                scale = smoothing_scale(torch.rand(norm.weight.shape[0]) + 0.5, linears, alpha=0.5)
                divide_outputs(norm, scale)
                multiply_inputs(linears, scale)
        assert torch.allclose(tower(pixels), before, rtol=1e-4, atol=1e-3)


def test_smoothquant_lowers_w8a8_error_with_activation_outliers(tiny):
    tile = tiny[1].config.tile_size
    pixels = torch.randn(2, 3, tile, tile, generator=torch.Generator().manual_seed(0))
    reference = loud_tower(tiny)(pixels).detach()
    errors = {}
    for alpha in (None, 0.5):
        tower = loud_tower(tiny)
        assert w8a8_quantize(tower, tower.model.encoder.layers, [pixels], alpha) == 6 * 3
        errors[alpha] = float((tower(pixels).detach() - reference).norm() / reference.norm())
    assert errors[0.5] < 0.6 * errors[None]  # measured: 0.043 vs 0.116
