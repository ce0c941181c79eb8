"""Resumable training state without pickle: fp32 weights, optimizer tensors and counters in safetensors + JSON.

Layout of `<output_dir>/state/`::

    model.safetensors       full-precision weights (our module names)
    optimizer.safetensors   per-parameter AdamW tensors, keys "<param index>.<name>"
    trainer.json            step, data position, optimizer param-group settings, recipe name

Written to a temporary folder and swapped in with renames, so a kill at any moment leaves either the old
or the new state complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nvila.atomic import publish, temporary_folder
from nvila.errors import CheckpointError


@dataclass
class Progress:
    step: int = 0  #: optimiser steps done
    epoch: int = 0  #: pass over the data the stream is in
    offset: int = 0  #: position inside that pass's order
    samples_seen: int = 0
    tokens_seen: int = 0


def save_state(
    folder: Path, model_state: dict[str, torch.Tensor], optim_state: dict[str, Any], progress: Progress
) -> None:
    """Atomically write full (unsharded) model and optimizer state dicts and the progress to `folder`.

    `optim_state` is keyed by parameter name (`torch.distributed.checkpoint.state_dict` format).
    """
    tmp = temporary_folder(folder.parent, "state")
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
        save_file(_dedupe(weights), str(tmp / "model.safetensors"))
        tensors, scalars = {}, {}
        for name, slots in optim_state["state"].items():
            for slot, value in slots.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{name}|{slot}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{name}|{slot}"] = value
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        meta = {"progress": asdict(progress), "param_groups": optim_state["param_groups"], "scalars": scalars}
        (tmp / "trainer.json").write_text(json.dumps(meta, indent=2))
        publish(tmp)
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _dedupe(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop tensors that share storage with an earlier one (tied embeddings); safetensors refuses aliases."""
    seen, out = set(), {}
    for key, value in weights.items():
        ptr = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if ptr not in seen:
            seen.add(ptr)
            out[key] = value
    return out


def find_state(folder: Path) -> Path | None:
    """The complete state folder to resume from (the `.old` copy if a swap was interrupted), or None."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / "trainer.json").is_file():
            return candidate
    return None


def load_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Progress]:
    """Read (model state, optimizer state, progress) written by `save_state`."""
    try:
        meta = json.loads((folder / "trainer.json").read_text())
        weights = load_file(str(folder / "model.safetensors"))
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read the training state in {folder}: {e}") from None
    slots: dict[str, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        name, slot = key.split("|", 1)
        slots.setdefault(name, {})[slot] = value
    return weights, {"state": slots, "param_groups": meta["param_groups"]}, Progress(**meta["progress"])
