"""Quantized linear layers, their checkpoint formats, and swapping them into a model before loading.

- `AWQLinear` (LLM, W4A16): int4 weights in the AutoAWQ GEMM layout (`qweight`, `qzeros`, `scales`; see
  `nvila.ops.int4`), float activations. Forward: dequantize the weight, then a float matmul.
  Described by `llm/config.json` -> "quantization_config" as AutoAWQ / transformers write it.
- `W8A8Linear` (vision tower): int8 weights per output channel (`weight` int8 [out, in], `weight_scale` float32
  [out, 1]), activations quantized per token on every forward, integer products (`nvila.ops.int8`).
  Described by `vision_tower/config.json` -> "quantization_config" in the compressed-tensors "int-quantized"
  form (what vLLM / SGLang read for W8A8-int8 checkpoints).

Quantized tensors are buffers in their storage dtypes, so the checkpoint writer stores them as they are (only
parameters are cast to bf16). Owns no calibration (`nvila.quant.awq`, `.smooth`) and no file I/O (`nvila.checkpoint`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nvila.errors import CheckpointError
from nvila.ops import int4, int8

AWQ_VERSION = "gemm"
#: `llm/config.json` "quantization_config" of W4A16 (AutoAWQ's keys; group_size filled in).
AWQ_CONFIG: dict[str, Any] = {
    "quant_method": "awq",
    "bits": int4.BITS,
    "group_size": 128,
    "zero_point": True,
    "version": AWQ_VERSION,
    "modules_to_not_convert": None,
}
_INT8 = {"num_bits": 8, "type": "int", "symmetric": True, "group_size": None}
#: `vision_tower/config.json` "quantization_config" of W8A8 (compressed-tensors, int-quantized).
W8A8_CONFIG: dict[str, Any] = {
    "quant_method": "compressed-tensors",
    "format": "int-quantized",
    "quantization_status": "compressed",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {**_INT8, "strategy": "channel", "dynamic": False},
            "input_activations": {**_INT8, "strategy": "token", "dynamic": True},
            "output_activations": None,
        }
    },
    "ignore": [],
    "kv_cache_scheme": None,
}


class AWQLinear(nn.Module):
    """y = x W^T + b with W held as group-wise int4 (AutoAWQ GEMM layout); x and y in float."""

    def __init__(
        self, in_features: int, out_features: int, group_size: int, bias: bool, dtype: torch.dtype, device=None
    ) -> None:
        super().__init__()
        if in_features % group_size:
            raise ValueError(f"group size {group_size} does not divide in_features {in_features}")
        if out_features % int4.PACK:
            raise ValueError(f"out_features {out_features} is not a multiple of {int4.PACK} (int4 packing)")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups, words = in_features // group_size, out_features // int4.PACK
        self.register_buffer("qweight", torch.zeros(in_features, words, dtype=torch.int32, device=device))
        self.register_buffer("qzeros", torch.zeros(groups, words, dtype=torch.int32, device=device))
        self.register_buffer("scales", torch.zeros(groups, out_features, dtype=torch.float16, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int) -> AWQLinear:
        """Round-to-nearest of the linear's current weight (AWQ scales are folded in before this)."""
        w = linear.weight
        module = cls(linear.in_features, linear.out_features, group_size, linear.bias is not None, w.dtype, w.device)
        for name, tensor in int4.pack_linear(w, group_size).items():
            getattr(module, name).copy_(tensor)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.data)
        return module

    def dequantized_weight(self) -> torch.Tensor:
        """[out, in] float32."""
        return int4.unpack_linear(self.qweight, self.qzeros, self.scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits=4, group_size={self.group_size}"


class W8A8Linear(nn.Module):
    """y = x W^T + b with int8 W (per output channel) and x quantized to int8 per token on the fly."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype, device=None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, 1, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> W8A8Linear:
        w = linear.weight
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, w.dtype, w.device)
        q, scale = int8.quantize_rows(w)
        module.weight.copy_(q)
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.data)
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # [t, in]
        x_q, x_scale = int8.quantize_rows(rows)  # [t, in] int8, [t, 1]
        y = int8.int8_matmul(x_q, self.weight) * x_scale * self.weight_scale.T  # [t, out] float32
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w8a8"


# ---- configs <-> modules ----------------------------------------------------------------------------------
def awq_config(group_size: int) -> dict[str, Any]:
    return {**AWQ_CONFIG, "group_size": group_size}


def w8a8_config() -> dict[str, Any]:
    return copy.deepcopy(W8A8_CONFIG)


def check_awq_config(config: dict[str, Any], where: str) -> int:
    """The group size of a supported AWQ config, or a `CheckpointError` naming what is not supported."""
    expected = {"quant_method": "awq", "bits": int4.BITS, "zero_point": True, "version": AWQ_VERSION}
    wrong = {k: config.get(k) for k, v in expected.items() if str(config.get(k)).lower() != str(v).lower()}
    group_size = config.get("group_size")
    if wrong or not isinstance(group_size, int) or group_size < 1:
        raise CheckpointError(
            f"{where}: unsupported quantization_config {config}; nvila reads AWQ as {expected} with a group_size"
        )
    return group_size


def check_w8a8_config(config: dict[str, Any], where: str) -> None:
    """Raise `CheckpointError` unless `config` describes the W8A8 scheme `W8A8Linear` computes."""
    groups = config.get("config_groups")
    group = next(iter(groups.values())) if isinstance(groups, dict) and len(groups) == 1 else None
    same = (
        isinstance(group, dict)
        and all(config.get(k) == W8A8_CONFIG[k] for k in ("quant_method", "format"))
        and all(
            _subset(W8A8_CONFIG["config_groups"]["group_0"][k], group.get(k)) for k in ("weights", "input_activations")
        )
    )
    if not same:
        raise CheckpointError(
            f"{where}: unsupported quantization_config; nvila reads compressed-tensors int-quantized W8A8 "
            "(int8 symmetric weights per channel, dynamic int8 symmetric activations per token)"
        )


def _subset(expected: dict[str, Any], actual: Any) -> bool:
    return isinstance(actual, dict) and all(actual.get(k) == v for k, v in expected.items() if k != "group_size")


def replace_linears(
    part: nn.Module, make: Callable[[str, nn.Linear], nn.Module], skip: Callable[[str], bool]
) -> list[str]:
    """Replace every nn.Linear of `part` whose name `skip` refuses by `make(name, linear)`; returns the names."""
    names = [n for n, m in part.named_modules() if isinstance(m, nn.Linear) and not skip(n)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = part.get_submodule(parent_name)
        setattr(parent, child, make(name, getattr(parent, child)))
    return names


def llm_skips(config: dict[str, Any]) -> Callable[[str], bool]:
    """Linears of the LLM left in float: lm_head (always, as AutoAWQ / transformers) and modules_to_not_convert."""
    keep = ["lm_head", *(config.get("modules_to_not_convert") or [])]
    return lambda name: any(name == k or name.startswith(k + ".") for k in keep)


def tower_skips(config: dict[str, Any], prefix: str) -> Callable[[str], bool]:
    """Linears of the tower left in float: the config's "ignore" names (file names, i.e. with `prefix`)."""
    ignore = set(config.get("ignore") or [])
    return lambda name: prefix + name in ignore


def prepare_quantized(
    llm: nn.Module, tower: nn.Module, configs: dict[str, dict[str, Any]], *, tower_prefix: str, where: str
) -> None:
    """Swap in empty quantized layers where the part configs' "quantization_config" say (before loading).

    configs: {"llm": ..., "vision_tower": ...}, either may be absent; `where` names the checkpoint in errors.
    """
    if "llm" in configs:
        group_size = check_awq_config(configs["llm"], f"{where}/llm/config.json")

        def make_awq(name: str, linear: nn.Linear) -> AWQLinear:
            w = linear.weight
            try:
                return AWQLinear(
                    linear.in_features, linear.out_features, group_size, linear.bias is not None, w.dtype, w.device
                )
            except ValueError as e:
                raise CheckpointError(f"{where}: llm layer {name}: {e}") from None

        replace_linears(llm, make_awq, llm_skips(configs["llm"]))
    if "vision_tower" in configs:
        check_w8a8_config(configs["vision_tower"], f"{where}/vision_tower/config.json")

        def make_w8a8(_: str, linear: nn.Linear) -> W8A8Linear:
            w = linear.weight
            return W8A8Linear(linear.in_features, linear.out_features, linear.bias is not None, w.dtype, w.device)

        replace_linears(tower, make_w8a8, tower_skips(configs["vision_tower"], tower_prefix))


def quantization_configs(llm: nn.Module, tower: nn.Module, *, tower_prefix: str) -> dict[str, dict[str, Any]]:
    """The "quantization_config" of each part holding quantized layers ({"llm": ..., "vision_tower": ...})."""
    configs: dict[str, dict[str, Any]] = {}
    awq = [m for m in llm.modules() if isinstance(m, AWQLinear)]
    if awq:
        in_float = [n for n, m in llm.named_modules() if isinstance(m, nn.Linear) and not llm_skips({})(n)]
        configs["llm"] = {**awq_config(awq[0].group_size), "modules_to_not_convert": in_float or None}
    if any(isinstance(m, W8A8Linear) for m in tower.modules()):
        in_float = [tower_prefix + n for n, m in tower.named_modules() if isinstance(m, nn.Linear)]
        configs["vision_tower"] = {**w8a8_config(), "ignore": in_float}
    return configs
