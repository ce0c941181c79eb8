"""`nvila.load`: one loader for every place a model comes from, used by the library and every `--model` flag.

A model is a local folder in the official layout (`llm/`, `vision_tower/`, `mm_projector/`) or in the single-folder
HF layout (`nvila convert --to hf`, NVIDIA's `-hf` releases), detected from its files, or a hub id `org/name`
(`nvila.hub`). Quantized checkpoints (W4A16 AWQ LLM, W8A8 tower) load in either layout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nvila.checkpoint import CheckpointFiles, is_hf_layout, load_files, official_files
from nvila.convert.hf_files import hf_files
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
