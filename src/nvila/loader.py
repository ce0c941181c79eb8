"""`nvila.load`: one loader for every place a model comes from, used by the library and every `--model` flag.

A model is a local folder in the official layout (`llm/`, `vision_tower/`, `mm_projector/`) or in the single-folder
HF layout (`nvila convert --to hf`, NVIDIA's `-hf` releases), detected from its files, or a hub id `org/name`
(`nvila.hub`). Quantized checkpoints (W4A16 AWQ LLM, W8A8 tower) load in either layout.

`load_pretrained` / `load_processor` are what `NVILAForConditionalGeneration.from_pretrained` and
`NVILAProcessor.from_pretrained` (so transformers' `AutoModel...` / `AutoProcessor` / `pipeline`) run: the same
loading, with transformers' arguments (`dtype`, `device_map`, `attn_implementation`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nvila.checkpoint import (
    CheckpointFiles,
    is_hf_layout,
    load_files,
    official_files,
    processor_from_files,
    resolve_dtype,
)
from nvila.convert.hf_files import hf_files
from nvila.errors import ConfigError
from nvila.hub import is_hub_id, resolve_model
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor


def checkpoint_files(
    model: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> CheckpointFiles:
    """The configs, tokenizer folder and tensors of `model` (a folder in either layout, or a hub id)."""
    root = resolve_model(model, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    return hf_files(root) if is_hf_layout(root) else official_files(root)


def model_name(model: str | os.PathLike) -> str:
    """The name a model goes by (served model id, result folders): the folder's or the hub repository's."""
    return Path(os.fspath(model)).name if not is_hub_id(model) else os.fspath(model).split("/")[1]


def load(
    model: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    overrides: dict[str, Any] | None = None,
    reinit: Sequence[str] = (),
) -> tuple[NVILAForConditionalGeneration, NVILAProcessor]:
    """Load `model` (a folder in the official or HF layout, or a hub id): returns (model in eval mode, processor).

    `revision`, `cache_dir`, `local_files_only`, `token`: for hub ids (`huggingface_hub`'s meaning).
    `overrides` / `reinit`: see `nvila.checkpoint.load_files`. Raises `CheckpointError` with a one-line reason.
    """
    files = checkpoint_files(
        model, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    return load_files(files, name=model_name(model), device=device, dtype=dtype, overrides=overrides, reinit=reinit)


#: `from_pretrained` arguments transformers' Auto classes and pipelines pass that change nothing here.
PASSED_BY_TRANSFORMERS = {
    "config", "trust_remote_code", "code_revision", "_from_auto", "_from_pipeline", "use_safetensors", "adapter_kwargs"
}  # fmt: skip
#: Values of an argument that ask for nothing (the defaults transformers passes along).
UNSET = (None, False, "", {})
#: `device_map` values that accelerate resolves into a map over the visible devices.
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
#: The hub arguments of `checkpoint_files`.
HUB_ARGUMENTS = ("revision", "cache_dir", "local_files_only", "token")


def _split_arguments(kwargs: dict[str, Any], accepted: Sequence[str], who: str) -> dict[str, Any]:
    """The hub and `accepted` arguments of `kwargs`; a `TypeError` naming any other one that is set (transformers'
    Auto classes pass their defaults of `force_download`, `proxies`, `subfolder`...: those are not set)."""
    unknown = sorted(
        k for k, v in kwargs.items() if k not in (*HUB_ARGUMENTS, *accepted, *PASSED_BY_TRANSFORMERS) and v not in UNSET
    )
    if unknown:
        raise TypeError(f"{who} does not take {', '.join(unknown)}")
    return {k: v for k, v in kwargs.items() if k in (*HUB_ARGUMENTS, *accepted)}


def _checkpoint_dtype(files: CheckpointFiles) -> torch.dtype:
    """The dtype the LLM's weights were saved in (`dtype="auto"`): its config's `torch_dtype`, else bfloat16."""
    llm = files.configs["llm"]
    name = str(llm.get("torch_dtype") or llm.get("dtype") or "bfloat16").removeprefix("torch.")
    return resolve_dtype(name)


def load_pretrained(model: str | os.PathLike, **kwargs: Any) -> NVILAForConditionalGeneration:
    """`NVILAForConditionalGeneration.from_pretrained`: `load` with transformers' arguments.

    `dtype` (or `torch_dtype`): a torch dtype, its name, or "auto" / None for the checkpoint's (bfloat16 for the
    released models). `device_map`: a device ("cpu", "cuda:0"), a dict of module name -> device, or "auto" /
    "balanced" / "sequential" (spread over the visible GPUs by `accelerate`, within `max_memory`); the weights are
    read on the first device (or the CPU) and then placed. `attn_implementation`: "sdpa", "eager",
    "flash_attention_2" (where installed)... set on the tower and the LLM. Hub arguments as for `load`.
    """
    args = _split_arguments(
        kwargs, ("dtype", "torch_dtype", "device_map", "max_memory", "attn_implementation"), "from_pretrained"
    )
    files = checkpoint_files(model, **{k: args[k] for k in HUB_ARGUMENTS if k in args})
    dtype = args.get("dtype") or args.get("torch_dtype") or "auto"
    dtype = _checkpoint_dtype(files) if dtype == "auto" else dtype
    placement = _device_map(args.get("device_map"))
    single = _single_device(placement) if isinstance(placement, dict) else None
    loaded, _ = load_files(files, name=model_name(model), device=single or "cpu", dtype=dtype)
    if args.get("attn_implementation"):
        loaded.set_attn_implementation(args["attn_implementation"])
    if isinstance(placement, dict) and single is not None:
        loaded.hf_device_map = placement
    elif placement is not None:
        _dispatch(loaded, placement, args.get("max_memory"))
    return loaded


def load_processor(model: str | os.PathLike, **kwargs: Any) -> NVILAProcessor:
    """`NVILAProcessor.from_pretrained` (and `AutoProcessor`): the processor of `model` (hub arguments as `load`)."""
    args = _split_arguments(kwargs, ("video_timestamps", "video_sampling"), "NVILAProcessor.from_pretrained")
    files = checkpoint_files(model, **{k: args[k] for k in HUB_ARGUMENTS if k in args})
    processor = processor_from_files(files, name=model_name(model))
    for option in ("video_timestamps", "video_sampling"):
        if option in args:
            setattr(processor, option, args[option])
    return processor


def _device_map(device_map: Any) -> dict[str, Any] | str | None:
    """transformers' normal form of a `device_map`: None, a strategy name, or a dict (one device: {"": device})."""
    if device_map is None or device_map in DEVICE_MAP_STRATEGIES:
        return device_map
    if isinstance(device_map, dict):
        return device_map
    return {"": _device_name(device_map)}


def _device_name(spec: Any) -> str:
    """A device given as a name, a `torch.device` or a CUDA index, by its canonical name (`ConfigError` if none)."""
    try:
        return str(torch.device("cuda", spec) if isinstance(spec, int) else torch.device(spec))
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device_map {spec!r} is neither a device, a dict of module -> device, nor one of "
            f"{', '.join(repr(s) for s in DEVICE_MAP_STRATEGIES)}"
        ) from None


def _single_device(placement: dict[str, Any]) -> str | None:
    """The device of a map that puts everything on one device, else None."""
    devices = {_device_name(device) for device in placement.values()}
    return next(iter(devices)) if len(devices) == 1 else None


def _dispatch(model: NVILAForConditionalGeneration, placement: dict[str, Any] | str, max_memory: Any) -> None:
    """Spread `model` over devices as `placement` says (a strategy is resolved by transformers / accelerate)."""
    from accelerate import dispatch_model
    from transformers.integrations.accelerate import _get_device_map

    if isinstance(placement, str):
        placement = _get_device_map(model, placement, max_memory, None)
    dispatch_model(model, device_map=placement)
    model.hf_device_map = placement
