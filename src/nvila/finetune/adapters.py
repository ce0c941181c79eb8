"""Fine-tuned weights without the base: peft adapters plus the other trained tensors, and loading them back.

An adapters folder::

    adapter_config.json              peft's LoraConfig (target patterns, rank, alpha)
    adapter_model.safetensors        LoRA factors, peft's names: base_model.model.<module>.lora_{A,B}.weight
    non_lora_trainables.safetensors  other trained tensors in full precision, module names (projector, tower
                                     LayerNorms, the whole LLM with --method full)
    finetune.json                    method, the base's path, architecture and weight fingerprint

The first two are what `PeftModel.save_pretrained` writes, so `PeftModel.from_pretrained(base_model, folder)`
reads them too; the third follows the official VILA code's `non_lora_trainables` (there a pickle; safetensors
here). Owns: writing (atomic) and reading this folder with checks that name what does not match the base.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nvila.atomic import atomic_folder
from nvila.errors import CheckpointError
from nvila.finetune.methods import ADAPTER_NAME, base_fingerprint, quiet_peft_probe
from nvila.json_io import read_json
from nvila.loader import load
from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor

log = logging.getLogger(__name__)

FORMAT = "nvila-finetune/1"
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
NON_LORA, INFO = "non_lora_trainables.safetensors", "finetune.json"
PEFT_PREFIX = "base_model.model."  #: what `PeftModel` puts before module names in its files
#: Config fields that do not change what the weights mean.
_IGNORED_FIELDS = {"name"}


def architecture(cfg: NVILAConfig) -> dict[str, Any]:
    """The config as a flat {"text.hidden_size": 3584, ...} dict, without fields that do not shape weights."""
    flat: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key in _IGNORED_FIELDS:
            continue
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def save_adapters(folder: Path, peft_model, trained: dict[str, torch.Tensor], info: dict[str, Any]) -> Path:
    """Write an adapters folder atomically.

    `trained`: every trainable tensor of the model, by module name (LoRA ones hold `.lora_`); `info`: what
    goes to finetune.json besides the format (method, base, architecture, fingerprint).
    """
    from peft.utils import get_peft_model_state_dict

    lora = {PEFT_PREFIX + k: v for k, v in trained.items() if ".lora_" in k}
    rest = {k: v.detach().cpu().contiguous() for k, v in trained.items() if ".lora_" not in k}
    # the embeddings are never LoRA targets here; "auto" would look the base model's name up on the hub
    adapter_state = get_peft_model_state_dict(
        peft_model, state_dict=lora, adapter_name=ADAPTER_NAME, save_embedding_layers=False
    )
    config = copy.copy(peft_model.peft_config[ADAPTER_NAME])
    config.inference_mode = True
    config.base_model_name_or_path = info.get("base")
    with atomic_folder(folder) as tmp:
        config.save_pretrained(str(tmp))
        save_file({k: v.detach().cpu().contiguous() for k, v in adapter_state.items()}, str(tmp / ADAPTER_WEIGHTS),
                  metadata={"format": "pt"})  # fmt: skip
        save_file(rest, str(tmp / NON_LORA), metadata={"format": "pt"})
        (tmp / INFO).write_text(json.dumps({"format": FORMAT, **info}, indent=2))
    return folder


def _read_info(folder: Path) -> dict[str, Any]:
    missing = [name for name in (INFO, ADAPTER_CONFIG, ADAPTER_WEIGHTS, NON_LORA) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder} is not an nvila adapters folder: missing {', '.join(missing)}")
    info = read_json(folder / INFO, CheckpointError, want=dict)
    try:
        rank = int(read_json(folder / ADAPTER_CONFIG, CheckpointError, want=dict)["r"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: no valid LoRA rank 'r' ({e})") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{folder / INFO}: unknown format {info.get('format')!r}, expected {FORMAT}")
    return {**info, "rank": rank}


def _check_architecture(base: Path, adapters: Path, cfg: NVILAConfig, trained_on: dict[str, Any]) -> None:
    here = architecture(cfg)
    diffs = [
        f"{key}: adapters {trained_on.get(key)!r}, base {here.get(key)!r}"
        for key in sorted(set(here) | set(trained_on))
        if here.get(key) != trained_on.get(key)
    ]
    if diffs:
        shown = "; ".join(diffs[:6]) + (f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else "")
        raise CheckpointError(
            f"the adapters in {adapters} were trained on a model of another architecture than {base}: {shown}"
        )


def _check_tensors(model: NVILAForConditionalGeneration, adapters: Path, rank: int) -> None:
    """Every LoRA factor must sit on a linear layer of the base with matching sizes; every other tensor must exist."""
    modules = dict(model.named_modules())
    problems = []
    with safe_open(str(adapters / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
            match = re.fullmatch(r"(.+)\.lora_([AB])\.weight", key.removeprefix(PEFT_PREFIX))
            module = modules.get(match.group(1)) if match else None
            if module is None or not hasattr(module, "in_features"):
                problems.append(f"{key} (no such linear layer in the base)")
                continue
            shape = list(f.get_slice(key).get_shape())
            expected = [rank, module.in_features] if match.group(2) == "A" else [module.out_features, rank]
            if shape != expected:
                problems.append(f"{key} is {shape}, the base needs {expected}")
    expected_state = model.state_dict()
    with safe_open(str(adapters / NON_LORA), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118
            if key not in expected_state:
                problems.append(f"{key} in {NON_LORA} (no such tensor in the base)")
            elif list(f.get_slice(key).get_shape()) != list(expected_state[key].shape):
                problems.append(
                    f"{key} in {NON_LORA} is {list(f.get_slice(key).get_shape())}, "
                    f"the base has {list(expected_state[key].shape)}"
                )
    if problems:
        shown = "; ".join(problems[:6]) + (f" (and {len(problems) - 6} more)" if len(problems) > 6 else "")
        raise CheckpointError(f"the adapters in {adapters} do not fit the base model: {shown}")


def load_finetuned(
    base: str | Path,
    adapters: str | Path,
    *,
    merge: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    allow_other_base: bool = False,
) -> tuple[NVILAForConditionalGeneration, NVILAProcessor]:
    """The base checkpoint with fine-tuned adapters put back: (model in eval mode, processor).

    With `merge` the LoRA factors are folded into the base weights (plain linear layers, ready for
    `nvila.save`); without, the model keeps peft's LoRA layers. Raises `CheckpointError` when the adapters were
    trained on another architecture, when a tensor does not fit, or (unless `allow_other_base`) when the base
    weights differ from those the adapters were trained on.
    """
    from peft import PeftModel

    base, adapters = Path(base), Path(adapters)
    info = _read_info(adapters)
    model, processor = load(base, device=device, dtype=dtype)
    _check_architecture(base, adapters, model.nvila_config, info.get("architecture", {}))
    _check_tensors(model, adapters, info["rank"])
    if info.get("base_fingerprint") != base_fingerprint(model):
        message = (
            f"{base} holds other weights than the base the adapters in {adapters} were trained on "
            f"({info.get('base')}); the result would not be the fine-tuned model"
        )
        if not allow_other_base:
            raise CheckpointError(message + " (pass allow_other_base=True to load them anyway)")
        log.warning(message)
    model.load_state_dict(load_file(str(adapters / NON_LORA), device=str(model.device)), strict=False)
    with quiet_peft_probe():
        peft_model = PeftModel.from_pretrained(model, str(adapters), adapter_name=ADAPTER_NAME, is_trainable=False)
    if merge:
        model = peft_model.merge_and_unload()
    return model.eval(), processor
