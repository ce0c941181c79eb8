"""Efficient fine-tuning: LoRA / QLoRA on the LLM, LayerNorm-only / LoRA / full tower, per-part learning rates.

`methods` (what trains), `adapters` (saving / loading adapters without the base), `trainer` (the job on top of
`nvila.train.Trainer`), `cli` (`nvila finetune`). Names are imported lazily, so building the `nvila` parser
(`cli.add_finetune_args`) does not import torch or peft.
"""

from __future__ import annotations

from nvila.lazy import lazy_exports

_EXPORTS = {
    "FinetuneSpec": "nvila.finetune.methods",
    "apply_finetune": "nvila.finetune.methods",
    "layernorm_parameters": "nvila.finetune.methods",
    "load_finetuned": "nvila.finetune.adapters",
    "save_adapters": "nvila.finetune.adapters",
    "FinetuneTrainer": "nvila.finetune.trainer",
    "finetune": "nvila.finetune.trainer",
    "finetune_recipe": "nvila.finetune.trainer",
    "add_finetune_args": "nvila.finetune.cli",
    "run_finetune": "nvila.finetune.cli",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
