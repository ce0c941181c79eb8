"""AWQ (activation-aware weight quantization; Lin et al., MLSys 2024) of the Qwen2 decoder to W4A16.

Per decoder layer, on calibration activations (layer by layer, each layer fed the float outputs of the one
before, as AutoAWQ does), four groups of linears share one input and one scale vector s:

    group     input comes from           linears               output compared (MSE)
    qkv       input_layernorm            q, k, v               self_attn
    o         v_proj (through attention) o_proj                o_proj
    gate_up   post_attention_layernorm   gate, up              mlp
    down      up_proj (times act(gate))  down_proj             down_proj

s = mean|x|^alpha per input channel (normalised so that sqrt(max * min) = 1), alpha searched on a grid of
N_GRID values in [0, 1) for the lowest output MSE with the group's weights rounded as W' = Q(W s) / s;
alpha = 0 is plain round-to-nearest, so the search never does worse than RTN on the calibration set. The
chosen s is then folded exactly: the producing op's output channels are divided by s (`folding`) and the
linears' columns multiplied by s, after which the weights are rounded for good (`AWQLinear.from_linear`).
With grouped-query attention (fewer KV heads than query heads) o_proj's input holds each v channel once per
query head of its group: s is tied across those copies (the mean |x| of the copies), so the fold into
v_proj stays exact and no input scale has to be stored. Every group folds, so the files hold plain AutoAWQ
GEMM tensors. Shapes: t tokens, c channels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from nvila.errors import ConfigError
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.ops import int4
from nvila.ops.quantized import AWQLinear, llm_skips, replace_linears
from nvila.quant.folding import divide_outputs, multiply_inputs

N_GRID = 20  #: alpha in {0, 1/20, ..., 19/20} (AutoAWQ's grid)

Call = tuple[tuple, dict[str, Any]]  #: positional and keyword arguments of one module call


@dataclass
class ScaleGroup:
    """Linears fed by one op, whose shared input scale is searched and folded into that op."""

    name: str
    prev: nn.Module  #: the op producing the input channels (a norm, or a linear's output rows)
    linears: list[nn.Linear]
    inspect: nn.Module  #: the block whose output error is measured (its first input is the linears' input)
    repeats: int = 1  #: grouped-query attention: each of prev's channels appears `repeats` times per head
    head_dim: int = 1

    def to_inputs(self, scale: torch.Tensor) -> torch.Tensor:
        """[prev channels] -> [linear in_features] (copies per query head of a KV head)."""
        if self.repeats == 1:
            return scale
        return scale.reshape(-1, 1, self.head_dim).expand(-1, self.repeats, -1).reshape(-1)  # [kv*r*d]

    def to_prev(self, per_input: torch.Tensor) -> torch.Tensor:
        """[linear in_features] -> [prev channels], averaging the copies."""
        if self.repeats == 1:
            return per_input
        return per_input.reshape(-1, self.repeats, self.head_dim).mean(dim=1).reshape(-1)  # [kv*d]


@dataclass
class ScaleSearch:
    scale: torch.Tensor  #: [prev channels], folded into the group
    alpha: float
    mse_rtn: float  #: output MSE of plain round-to-nearest (alpha = 0)
    mse_awq: float  #: output MSE with the chosen alpha


def qwen2_groups(layer: nn.Module) -> list[ScaleGroup]:
    """The four scale groups of a transformers Qwen2 decoder layer."""
    attn, mlp = layer.self_attn, layer.mlp
    return [
        ScaleGroup("qkv", layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj], attn),
        ScaleGroup("o", attn.v_proj, [attn.o_proj], attn.o_proj, attn.num_key_value_groups, attn.head_dim),
        ScaleGroup("gate_up", layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], mlp),
        ScaleGroup("down", mlp.up_proj, [mlp.down_proj], mlp.down_proj),
    ]


def check_group_size(llm: nn.Module, group_size: int) -> None:
    """Raise `ConfigError` naming the linears `group_size` does not fit (in_features % g, out_features % 8)."""
    linears = [(n, m) for n, m in llm.named_modules() if isinstance(m, nn.Linear) and not llm_skips({})(n)]
    bad = sorted(
        {
            f"{name.split('.', 3)[-1]} ({m.in_features} -> {m.out_features})"  # model.layers.N.<this>
            for name, m in linears
            if m.in_features % group_size or m.out_features % int4.PACK
        }
    )
    if bad:
        fits = [g for g in (128, 64, 32, 16) if all(m.in_features % g == 0 for _, m in linears)]
        hint = f"; --group-size {fits[0]} fits every layer" if fits else ""
        raise ConfigError(
            f"group size {group_size} does not divide the input width of LLM layers {', '.join(bad)} "
            f"(int4 groups must tile in_features, and out_features must be a multiple of {int4.PACK}){hint}"
        )


def _first_input(call: Call) -> torch.Tensor:
    args, kwargs = call
    return args[0] if args else kwargs["hidden_states"]


def _output(result: Any) -> torch.Tensor:
    return result[0] if isinstance(result, tuple) else result


@torch.no_grad()
def search_scale(group: ScaleGroup, calls: Sequence[Call], group_size: int) -> ScaleSearch:
    """Grid-search alpha for `group` on the recorded calls of its `inspect` block (weights restored after)."""
    xs = [_first_input(c) for c in calls]
    width = xs[0].shape[-1]
    tokens = sum(x.numel() // width for x in xs)
    x_mean = group.to_prev(sum(x.abs().reshape(-1, width).float().sum(0) for x in xs) / tokens)  # [c]
    reference = [_output(group.inspect(*a, **k)) for a, k in calls]
    originals = [linear.weight.detach().clone() for linear in group.linears]
    losses: list[tuple[float, float, torch.Tensor]] = []
    try:
        for step in range(N_GRID):
            alpha = step / N_GRID
            scale = x_mean.pow(alpha).clamp(min=1e-4)
            scale = scale / (scale.max() * scale.min()).sqrt()
            s_in = group.to_inputs(scale).to(originals[0].dtype)
            for linear, w in zip(group.linears, originals):
                linear.weight.copy_(int4.fake_quantize(w * s_in, group_size) / s_in)
            squared = sum(
                float((_output(group.inspect(*a, **k)).float() - ref.float()).pow(2).sum())
                for (a, k), ref in zip(calls, reference)
            )
            losses.append((squared / sum(r.numel() for r in reference), alpha, scale))
    finally:
        for linear, w in zip(group.linears, originals):
            linear.weight.copy_(w)
    best = min(losses, key=lambda item: item[0])
    return ScaleSearch(scale=best[2], alpha=best[1], mse_rtn=losses[0][0], mse_awq=best[0])


def _recorder(store: list[Call]):
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        store.append((tuple(args), dict(kwargs)))

    return hook


@torch.no_grad()
def quantize_layer(layer: nn.Module, inputs: Sequence[Call], group_size: int) -> tuple[list[torch.Tensor], dict]:
    """AWQ one decoder layer in place; returns its float outputs on `inputs` and {group: alpha, mse_rtn, mse_awq}."""
    groups = qwen2_groups(layer)
    calls: dict[str, list[Call]] = {g.name: [] for g in groups}
    hooks = [g.inspect.register_forward_pre_hook(_recorder(calls[g.name]), with_kwargs=True) for g in groups]
    try:
        outputs = [_output(layer(*args, **kwargs)) for args, kwargs in inputs]
    finally:
        for hook in hooks:
            hook.remove()
    found = [search_scale(g, calls[g.name], group_size) for g in groups]  # all on the float layer
    del calls
    for group, result in zip(groups, found):
        divide_outputs(group.prev, result.scale)
        multiply_inputs(group.linears, group.to_inputs(result.scale))
    replace_linears(layer, lambda _, linear: AWQLinear.from_linear(linear, group_size), skip=lambda _: False)
    report = {g.name: {"alpha": r.alpha, "mse_rtn": r.mse_rtn, "mse_awq": r.mse_awq} for g, r in zip(groups, found)}
    return outputs, report


class _Stop(Exception):
    """Raised by the hook that captures the first decoder layer's inputs, to skip the rest of the forward."""


@torch.no_grad()
def decoder_inputs(model: NVILAForConditionalGeneration, batches: Sequence[dict[str, Any]]) -> list[Call]:
    """The (args, kwargs) of the first decoder layer for each batch of model inputs (media embedded)."""
    captured: list[Call] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append((tuple(args), dict(kwargs)))
        raise _Stop

    handle = model.llm.model.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            with contextlib.suppress(_Stop):
                model(**batch)
    finally:
        handle.remove()
    return captured


def awq_quantize(
    model: NVILAForConditionalGeneration, batches: Sequence[dict[str, Any]], group_size: int
) -> dict[str, dict]:
    """Quantize every decoder layer of `model.llm` to W4A16 with AWQ on `batches` (model keyword inputs).

    Returns {layer index: {group: {"alpha", "mse_rtn", "mse_awq"}}} for the report.
    """
    check_group_size(model.llm, group_size)
    inputs = decoder_inputs(model, batches)
    report = {}
    for index, layer in enumerate(tqdm(model.llm.model.layers, desc="AWQ W4A16 (LLM)", unit="layer")):
        outputs, report[str(index)] = quantize_layer(layer, inputs, group_size)
        inputs = [((out, *args[1:]), kwargs) if args else ((), {**kwargs, "hidden_states": out})
                  for out, (args, kwargs) in zip(outputs, inputs)]  # fmt: skip
    return report
