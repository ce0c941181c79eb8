"""Quantized linears against float ones, and the quantization_config entries that describe them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nvila.errors import CheckpointError
from nvila.ops import int4, int8
from nvila.ops.quantized import (
    AWQLinear,
    W8A8Linear,
    check_awq_config,
    check_w8a8_config,
    prepare_quantized,
    quantization_configs,
    w8a8_config,
)


def linear(in_features: int, out_features: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_int8_matmul_is_exact_integer_arithmetic():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-127, 128, (5, 40), generator=g, dtype=torch.int8)
    w = torch.randint(-127, 128, (24, 40), generator=g, dtype=torch.int8)
    assert torch.equal(int8.int8_matmul(x, w), (x.long() @ w.long().T).float())


def test_w8a8_linear_is_close_to_the_float_linear():
    fp = linear(96, 48)
    q = W8A8Linear.from_linear(fp)
    assert q.weight.dtype == torch.int8 and q.weight_scale.shape == (48, 1)
    x = torch.randn(2, 7, 96)
    with torch.no_grad():
        assert relative_error(q(x), fp(x)) < 0.02
        # the stored weight is the float one to within half a step per output channel
        assert bool(((q.weight.float() * q.weight_scale - fp.weight).abs() <= q.weight_scale / 2 + 1e-7).all())


def test_w8a8_activation_quantization_is_per_token():
    fp = linear(64, 32)
    q = W8A8Linear.from_linear(fp)
    x = torch.randn(4, 64)
    x[0] *= 1000  # one loud token must not swamp the others' precision
    with torch.no_grad():
        assert relative_error(q(x)[1:], fp(x)[1:]) < 0.02


def test_awq_linear_computes_the_dequantized_weight():
    fp = linear(64, 48)
    q = AWQLinear.from_linear(fp, group_size=32)
    assert (q.qweight.shape, q.qzeros.shape, q.scales.shape) == ((64, 6), (2, 6), (2, 48))
    x = torch.randn(3, 64)
    with torch.no_grad():
        expected = x @ int4.fake_quantize(fp.weight, 32).T + fp.bias
        assert torch.allclose(q(x), expected, atol=1e-5)
        assert relative_error(q(x), fp(x)) < 0.15  # int4: a few percent


def test_awq_linear_refuses_shapes_it_cannot_pack():
    with pytest.raises(ValueError, match="group size 128 does not divide in_features 96"):
        AWQLinear(96, 64, 128, True, torch.float32)
    with pytest.raises(ValueError, match="out_features 60 is not a multiple of 8"):
        AWQLinear(64, 60, 32, True, torch.float32)


class Part(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(linear(64, 64), nn.ReLU(), linear(64, 32, seed=1))
        self.lm_head = linear(32, 16)


def test_configs_describe_the_layers_and_rebuild_them():
    llm, tower = Part(), Part()
    llm.block[0] = AWQLinear.from_linear(llm.block[0], 32)
    llm.block[2] = AWQLinear.from_linear(llm.block[2], 32)
    tower.block[0] = W8A8Linear.from_linear(tower.block[0])
    configs = quantization_configs(llm, tower, tower_prefix="vision_model.")
    assert configs["llm"] == {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True,
                              "version": "gemm", "modules_to_not_convert": None}  # fmt: skip
    assert configs["vision_tower"]["ignore"] == ["vision_model.block.2", "vision_model.lm_head"]
    fresh_llm, fresh_tower = Part(), Part()
    prepare_quantized(fresh_llm, fresh_tower, configs, tower_prefix="vision_model.", where="ckpt")
    assert [type(m).__name__ for m in fresh_llm.block] == ["AWQLinear", "ReLU", "AWQLinear"]
    assert isinstance(fresh_llm.lm_head, nn.Linear)  # lm_head is never converted
    assert [type(m).__name__ for m in fresh_tower.block] == ["W8A8Linear", "ReLU", "Linear"]
    assert set(fresh_llm.state_dict()) == set(llm.state_dict())
    assert set(fresh_tower.state_dict()) == set(tower.state_dict())


def awq_sample() -> dict:
    return {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm"}


def test_modules_to_not_convert_stay_float():
    llm = Part()
    config = {**awq_sample(), "modules_to_not_convert": ["block.2"]}
    prepare_quantized(llm, Part(), {"llm": config}, tower_prefix="", where="ckpt")
    assert isinstance(llm.block[0], AWQLinear) and isinstance(llm.block[2], nn.Linear)


@pytest.mark.parametrize(
    "change", [{"bits": 8}, {"version": "gemv"}, {"zero_point": False}, {"group_size": -1}, {"quant_method": "gptq"}]
)
def test_unsupported_awq_configs_are_refused(change):
    with pytest.raises(CheckpointError, match="unsupported quantization_config"):
        check_awq_config({**awq_sample(), **change}, "ckpt/llm/config.json")


def test_unsupported_w8a8_configs_are_refused():
    check_w8a8_config(w8a8_config(), "ok")
    static = w8a8_config()
    static["config_groups"]["group_0"]["input_activations"]["dynamic"] = False
    with pytest.raises(CheckpointError, match="compressed-tensors int-quantized W8A8"):
        check_w8a8_config(static, "ckpt/vision_tower/config.json")


def test_a_layer_that_cannot_be_packed_names_itself():
    llm = nn.Sequential(linear(48, 64))
    with pytest.raises(CheckpointError, match="llm layer 0: group size 32 does not divide in_features 48"):
        prepare_quantized(llm, Part(), {"llm": awq_sample()}, tower_prefix="", where="ckpt")
