"""What trains and how fast: trainable parts, per-module learning rates, AdamW, warm-up + cosine.

The schedule is a pure function of the step, so resuming needs only the step number.
"""

from __future__ import annotations

import math

import torch

from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.train.recipe import OptimSpec, TrainableSpec

PARTS = ("vision_tower", "mm_projector", "llm")


def set_trainable(model: NVILAForConditionalGeneration, trainable: TrainableSpec) -> dict[str, int]:
    """Freeze / unfreeze the three parts; returns trainable parameter counts per part."""
    counts = {}
    for part in PARTS:
        flag = getattr(trainable, part)
        module = getattr(model, part)
        module.requires_grad_(flag)
        counts[part] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts


def param_groups(
    model: NVILAForConditionalGeneration, optim: OptimSpec, extra: torch.nn.Module | None = None
) -> list[dict]:
    """AdamW groups: the vision tower at lr * vision_lr_ratio, everything else at lr (trainable only).

    `extra` is a module wrapping the model's parts with new parameters of its own (e.g. pre-training heads);
    its parameters outside the model join the lr group.
    """
    vision = [p for p in model.vision_tower.parameters() if p.requires_grad]
    rest = [p for part in ("mm_projector", "llm") for p in getattr(model, part).parameters() if p.requires_grad]
    if extra is not None:
        known = {id(p) for p in model.parameters()}
        rest += [p for p in extra.parameters() if p.requires_grad and id(p) not in known]
    groups = []
    if vision:
        groups.append({"name": "vision_tower", "params": vision, "base_lr": optim.lr * optim.vision_lr_ratio})
    if rest:
        groups.append({"name": "projector_llm", "params": rest, "base_lr": optim.lr})
    for group in groups:
        group["lr"] = group["base_lr"]
    return groups


def build_optimizer(
    model: NVILAForConditionalGeneration, optim: OptimSpec, extra: torch.nn.Module | None = None
) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, optim, extra), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, eps=1e-8
    )


def lr_factor(step: int, total: int, warmup_ratio: float) -> float:
    """Multiplier of the peak LR at `step` (0-based): linear warm-up, then cosine decay to 0 at `total`."""
    warmup = max(1, math.ceil(total * warmup_ratio)) if warmup_ratio > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def apply_lr(optimizer: torch.optim.Optimizer, step: int, total: int, warmup_ratio: float) -> float:
    """Set every group's LR for `step`; returns the factor."""
    factor = lr_factor(step, total, warmup_ratio)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return factor
