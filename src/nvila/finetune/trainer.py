"""`FinetuneTrainer`: the training recipe runner with adapters, and `finetune`, the whole job.

Built on `nvila.train.Trainer` (same loop, loss, schedule, logs and resuming), it changes three things:
the model is prepared by `apply_finetune` before the optimiser exists (LoRA layers, LayerNorm-only tower, a 4-bit
LLM for QLoRA), the resumable state holds only the trainable tensors (the frozen base comes from the base
checkpoint again on `--resume`), and the result is an adapters folder (`nvila.finetune.adapters`), plus the
merged model in the official layout with `merge`. A method without LoRA (`full` LLM, tower frozen / LayerNorm /
full) exports the whole model in the official layout, as training does.

Outputs under `output_dir`: `adapters/`, `model/` (merged or full), `state/`, `losses.jsonl`, `tb/`,
`recipe.yaml` and `finetune.yaml` (the method; a resumed run must use the same).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from nvila.checkpoint import save
from nvila.errors import ConfigError
from nvila.finetune.adapters import architecture, load_finetuned, save_adapters
from nvila.finetune.methods import (
    FinetuneSpec,
    apply_finetune,
    base_fingerprint,
    check_qlora,
    quantize_llm_4bit,
    trainable_counts,
)
from nvila.loader import load
from nvila.train.recipe import Recipe, recipe_from_dict
from nvila.train.state import save_state
from nvila.train.trainer import Trainer

log = logging.getLogger(__name__)

SPEC_FILE = "finetune.yaml"
#: Peak learning rates when none is given: LoRA factors learn fast, full weights need a gentle rate.
DEFAULT_LR = {"full": 2e-5, "lora": 2e-4, "qlora": 2e-4}


def finetune_recipe(
    spec: FinetuneSpec,
    model: str,
    data: str,
    out: str,
    *,
    lr: float | None = None,
    vit_lr_ratio: float = 0.1,
    overrides: list[str] = (),
    **settings: Any,
) -> Recipe:
    """The training recipe of a fine-tuning job; `settings` are top-level `Recipe` fields (max_steps, ...)."""
    spec.validate()
    data_spec = {"train": data}
    for key in ("max_length", "packing", "media_root"):
        if key in settings:
            data_spec[key] = settings.pop(key)
    tree = {
        "name": f"finetune-{spec.method}-{spec.vision}",
        "output_dir": out,
        "model": {"checkpoint": model},
        "data": data_spec,
        # the parts `set_trainable` would switch on; `apply_finetune` narrows them (LoRA, LayerNorms)
        "trainable": {"vision_tower": spec.vision != "frozen", "mm_projector": True, "llm": spec.method == "full"},
        "optim": {"lr": DEFAULT_LR[spec.method] if lr is None else lr, "vision_lr_ratio": vit_lr_ratio},
        **settings,
    }
    if spec.base_dtype == "bfloat16":
        tree["bf16"] = True  # a bf16 base next to float32 trainable tensors needs autocast
    return recipe_from_dict(tree, list(overrides))


class FinetuneTrainer(Trainer):
    def __init__(self, recipe: Recipe, spec: FinetuneSpec, *, merge: bool = False, resume: bool = False) -> None:
        super().__init__(recipe, resume=resume)
        self.spec, self.merge = spec, merge
        self.peft = None
        self.base_info: dict[str, Any] = {}

    def setup(self) -> None:
        self.spec.validate()
        saved = self.out / SPEC_FILE
        if self.resume and saved.is_file():
            before = yaml.safe_load(saved.read_text())
            if before != self.spec.to_dict():
                changed = sorted(k for k in before.keys() | self.spec.to_dict().keys()
                                 if before.get(k) != self.spec.to_dict().get(k))  # fmt: skip
                raise ConfigError(
                    f"{self.out} was fine-tuned with other settings ({', '.join(changed)}: "
                    f"{', '.join(f'{before.get(k)!r}' for k in changed)}); resume with the same ones"
                )
        if self.spec.method == "qlora":
            check_qlora(self.recipe.device)
        super().setup()
        if self.dist.main:
            saved.write_text(yaml.safe_dump(self.spec.to_dict(), sort_keys=False))

    def _build_model(self):
        return load(self.recipe.model.checkpoint, dtype=self.spec.base_dtype)

    def prepare_model(self) -> dict[str, int]:
        """LoRA layers / LayerNorm selection on the freshly loaded base (QLoRA: its LLM quantized first)."""
        self.base_info = {
            "base": str(self.recipe.model.checkpoint),
            "architecture": architecture(self.model.nvila_config),
            "base_fingerprint": base_fingerprint(self.model),
        }
        if self.spec.method == "qlora":
            quantize_llm_4bit(self.model, self.device)
        with torch.random.fork_rng(devices=[]):  # LoRA's random init depends on the recipe's seed only
            torch.manual_seed(self.recipe.seed)
            self.peft = apply_finetune(self.model, self.spec)
        return trainable_counts(self.model)

    def _trainable_states(self):
        """Full (unsharded) trainable weights and optimiser state, on the CPU."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        trainable = {name: p for name, p in self.module.named_parameters() if p.requires_grad}
        if self.dist.enabled:  # gather the shards
            weights = get_model_state_dict(self.module, options=options)
            weights = {k: v for k, v in weights.items() if k in trainable}
        else:  # directly: the frozen (possibly 4-bit) base is never touched
            weights = {k: p.detach().to("cpu", copy=True) for k, p in trainable.items()}
        return weights, get_optimizer_state_dict(self.module, self.optimizer, options=options)

    def save_state(self) -> None:
        weights, optim_state = self._trainable_states()
        if self.dist.main:
            save_state(self.out / "state", weights, optim_state, self.progress)
        self.dist.barrier()

    def save_model(self) -> Path:
        """Adapters (and the merged model with `merge`); the whole model when no part uses LoRA."""
        if self.peft is None:
            return super().save_model()
        weights, _ = self._trainable_states()
        folder = self.out / "adapters"
        if self.dist.main:
            info = {**self.base_info, **self.spec.to_dict(), "vit_lr_ratio": self.recipe.optim.vision_lr_ratio}
            save_adapters(folder, self.peft, weights, info)
            if self.merge:
                merged, processor = load_finetuned(self.recipe.model.checkpoint, folder, merge=True)
                save(merged, processor.tokenizer, self.out / "model", overwrite=True)
        self.dist.barrier()
        return self.out / "model" if self.merge else folder


def finetune(
    recipe: Recipe, spec: FinetuneSpec, *, merge: bool = False, resume: bool = False
) -> tuple[dict[str, float], Path]:
    """Setup, train, save adapters (or the merged / full model), cleanup: (last step's metrics, output folder)."""
    if recipe.model.checkpoint is None:
        raise ConfigError("fine-tuning starts from a checkpoint: give --model (an official-layout folder)")
    trainer = FinetuneTrainer(recipe, spec, merge=merge, resume=resume)
    trainer.setup()
    try:
        metrics = trainer.train()
        path = trainer.save_model()
    finally:
        trainer.cleanup()
    return metrics, path
