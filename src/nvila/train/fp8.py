"""FP8 training of the LLM's linear layers with torchao's float8 (dynamic tensorwise scaling, e4m3 / e5m2).

Recipe `fp8`: `false`; `true`: float8 matmuls (`torch._scaled_mm`) on NVIDIA GPUs of compute capability
>= 8.9 (Ada, Hopper); `"emulate"`: the same float8 casts with float32 matmuls, on any device. Emulation gives
FP8 training's numerics (to check losses and convergence without such a GPU) but not its speed: every cast is
extra work, so steps are slower than without fp8.

Converted: every plain `nn.Linear` of the LLM except `lm_head` whose input and output features are both
multiples of 16 (`torch._scaled_mm` needs that). The token count, the inner dimension of the weight-gradient
matmul, must be a multiple of 16 too: it is zero-padded per matmul when it is not, so batches may have any
length. The weights stay ordinary high-precision parameters (the casts happen per matmul), so states and
exported checkpoints are those of an unconverted model.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

from nvila.errors import ConfigError

log = logging.getLogger(__name__)

#: The values the recipe field accepts.
Fp8Mode = Literal[False, True, "emulate"]
#: Lowest CUDA compute capability with float8 tensor cores (Ada Lovelace).
MIN_CAPABILITY = (8, 9)
_INSTALL = "pip install 'nvila[fp8]' (torchao)"


def is_fp8_mode(value: object) -> bool:
    """Whether `value` is an `Fp8Mode` (a bool, or exactly the string "emulate"; not 0 / 1)."""
    return isinstance(value, bool) or value == "emulate"


def check_fp8(mode: Fp8Mode, device: torch.device, *, bf16: bool = True) -> None:
    """Raise a `ConfigError` saying what to do when `mode` cannot run on `device` (or torchao is missing).

    `fp8: true` is meant to go with `bf16` autocast (float8 linears, bf16 for the rest); without it everything
    else computes in float32, which is allowed but logged.
    """
    if not mode:
        return
    if mode is True:
        if device.type != "cuda":
            raise ConfigError(
                f"fp8: true needs an NVIDIA GPU of compute capability >= 8.9 (Ada / Hopper); this run is on "
                f"{device.type}. Set fp8: false, or fp8: emulate to check FP8 numerics here (slow)"
            )
        capability = torch.cuda.get_device_capability(device)
        if capability < MIN_CAPABILITY:
            raise ConfigError(
                f"fp8: true needs compute capability >= 8.9 (Ada / Hopper); {torch.cuda.get_device_name(device)} "
                f"has {capability[0]}.{capability[1]}. Set fp8: false (with bf16: true), or fp8: emulate (slow)"
            )
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        raise ConfigError(f"fp8: {mode} needs torchao: {_INSTALL}; or set fp8: false") from None
    if mode is True and not bf16:
        log.warning("fp8 without bf16: the layers FP8 does not convert compute in float32; set bf16: true as well")


def converts(module: nn.Module, name: str) -> bool:
    """Whether FP8 training converts `module` (at dotted `name` in the LLM): see the module docstring."""
    return (
        type(module) is nn.Linear  # not subclasses (quantized or adapter layers)
        and name.rsplit(".", 1)[-1] != "lm_head"
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def fp8_config(mode: Fp8Mode):
    """torchao's `Float8LinearConfig` for `mode`: tensorwise dynamic scaling, inner dimensions padded to 16."""
    from torchao.float8 import Float8LinearConfig

    return Float8LinearConfig(emulate=mode == "emulate", pad_inner_dim=True)


def convert_to_fp8(llm: nn.Module, mode: Fp8Mode) -> int:
    """Swap the qualifying linears of `llm` (in place) for torchao `Float8Linear`s; returns how many."""
    from torchao.float8 import convert_to_float8_training
    from torchao.float8.float8_linear import Float8Linear

    linears = sum(type(m) is nn.Linear for m in llm.modules())
    convert_to_float8_training(llm, module_filter_fn=converts, config=fp8_config(mode))
    count = sum(isinstance(m, Float8Linear) for m in llm.modules())
    kind = "emulated" if mode == "emulate" else "float8"
    log.info("fp8 (%s): %d of %d LLM linear layers converted", kind, count, linears)
    if count == 0:
        log.warning("fp8: no LLM linear layer qualifies (all are lm_head or have features not multiples of 16)")
    return count
