"""The training recipe runner: setup, train, save, cleanup (one class, built from a `Recipe`).

Loss: the mean next-token cross-entropy over every labelled token of the global batch (all micro-batches
of the step on all ranks), so N processes with the same global batch give the same loss and gradients as
one. Outputs under `output_dir`: `model/` (official layout, bf16), `state/` (resumable, full precision),
`losses.jsonl`, TensorBoard events in `tb/`, and `recipe.yaml` (the resolved recipe).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from nvila.checkpoint import save
from nvila.data.dataset import ConversationDataset
from nvila.data.mixture import load_mixture
from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.loader import load
from nvila.models.nvila.configuration_nvila import from_name
from nvila.models.nvila.tokenization_nvila import load_tokenizer
from nvila.train.distributed import Dist, init_distributed, shard_model, shutdown
from nvila.train.fp8 import check_fp8, convert_to_fp8
from nvila.train.objectives import OBJECTIVES, ObjectiveSetup
from nvila.train.optim import apply_lr, build_optimizer, set_trainable
from nvila.train.recipe import Recipe
from nvila.train.state import Progress, find_state, load_state, save_state

log = logging.getLogger(__name__)


class SampleStream:
    """Items of `dataset` in a deterministic per-epoch order; skips unusable ones (None, counted by the dataset)."""

    def __init__(self, dataset, order_fn, epoch: int = 0, offset: int = 0) -> None:
        self.dataset, self.order_fn = dataset, order_fn
        self.epoch, self.offset = epoch, offset
        self.order = order_fn(epoch)

    def take(self, n: int) -> list:
        samples, misses = [], 0
        while len(samples) < n:
            if self.offset >= len(self.order):
                self.epoch, self.offset = self.epoch + 1, 0
                self.order = self.order_fn(self.epoch)
            sample = self.dataset[self.order[self.offset]]
            self.offset += 1
            if sample is None:
                misses += 1
                if misses > 2 * len(self.dataset) + n:
                    raise ConfigError(f"no usable samples in the dataset: {self.dataset.stats.summary()}")  # type: ignore
                continue
            samples.append(sample)
        return samples


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


class Trainer:
    def __init__(self, recipe: Recipe, *, resume: bool = False) -> None:
        self.recipe = recipe
        self.resume = resume
        self.out = Path(recipe.output_dir)

    # ---- setup --------------------------------------------------------------------------------------
    def setup(self) -> None:
        r = self.recipe
        self.device = _resolve_device(r.device)
        self.dist: Dist = init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        check_fp8(r.fp8, self.device, bf16=r.bf16)
        state_dir = find_state(self.out / "state")
        if state_dir is not None and not self.resume:
            raise ConfigError(
                f"{self.out} already holds a run; pass --resume to continue it or choose another output_dir"
            )
        self.model, self.processor = self._build_model()
        self.processor.video_timestamps = r.data.video_timestamps
        self.trainable = self.prepare_model()
        if r.activation_checkpointing:
            for hf_model in (self.model.llm, self.model.vision_tower.model):
                hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.fp8_layers = convert_to_fp8(self.model.llm, r.fp8) if r.fp8 else 0  # before sharding (torchao)
        mixture = load_mixture(r.data.train, r.data.media_root)
        self.dataset = ConversationDataset(
            mixture.records,
            self.processor,
            r.data.max_length,
            r.data.overlong,
            r.data.single_turns,
            r.data.media_inline,
        )
        setup = ObjectiveSetup(r, self.model, self.processor, mixture, self.dataset, self.dist.enabled)
        self.objective = OBJECTIVES[r.objective](setup)
        self.module = self.objective.module  # what the optimiser updates and the state saves
        self.module.to(self.device).train()
        if self.dist.enabled:
            shard_model(self.model, self.device)
        self.optimizer = build_optimizer(
            self.model, r.optim, extra=self.module if self.module is not self.model else None
        )
        self.progress = Progress()
        if state_dir is not None:
            self._restore(state_dir)
        self.stream = SampleStream(
            self.objective.items, self.objective.order, self.progress.epoch, self.progress.offset
        )
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "recipe.yaml").write_text(yaml.safe_dump(r.to_dict(), sort_keys=False))

    def _build_model(self):
        spec = self.recipe.model
        if spec.checkpoint:
            torch.manual_seed(spec.seed)  # the parts in `reinit` start from these random weights
            return load(spec.checkpoint, overrides=spec.overrides, reinit=spec.reinit)
        cfg = from_name(spec.preset).with_overrides(spec.overrides)
        tokenizer = load_tokenizer(spec.tokenizer) if spec.tokenizer else None
        return random_pretrained(cfg, seed=spec.seed, tokenizer=tokenizer)

    def prepare_model(self) -> dict[str, int]:
        """Choose what trains, before the optimiser exists; returns trainable parameter counts per part.

        The hook for subclasses that wrap the model first (adapters, quantized layers: `nvila.finetune`).
        """
        return set_trainable(self.model, self.recipe.trainable)

    def _restore(self, folder: Path) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        weights, optim_state, self.progress = load_state(folder)
        foreign = sorted(set(weights) - set(self.module.state_dict()))
        if foreign:
            raise ConfigError(
                f"the training state in {folder} holds weights this run does not have ({foreign[0]}, ...): it was "
                "written with another objective or pixel_loss setting; resume with the recipe that wrote it"
            )
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(self.module, weights, options=options)
        set_optimizer_state_dict(self.module, self.optimizer, optim_state, options=options)
        log.info("resumed from %s at step %d", folder, self.progress.step)

    # ---- one step -----------------------------------------------------------------------------------
    def _micro_batches(self) -> list:
        r, d = self.recipe, self.dist
        return [
            self.objective.batch(self.stream.take(r.micro_batch_size * d.world)[d.rank :: d.world])
            for _ in range(r.grad_accum)
        ]

    def step(self) -> dict[str, float]:
        r = self.recipe
        factor = apply_lr(self.optimizer, self.progress.step, r.max_steps, r.optim.warmup_ratio)
        batches = self._micro_batches()
        global_count = self.dist.all_sum(sum(self.objective.count(b) for b in batches))
        if global_count == 0:
            raise ConfigError("a training step has no labelled tokens (are the answers empty?)")
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if r.bf16 else contextlib.nullcontext()
        loss_sum, tokens, extra_metrics = 0.0, 0, defaultdict(list)
        for batch in batches:
            with autocast:
                part = self.objective.loss(batch, self.device)
            # FSDP averages gradients over ranks: scale so the result is the global mean
            ((part.loss + part.extra) * self.dist.world / global_count).backward()
            loss_sum += float(part.loss.detach())
            tokens += part.tokens
            for name, value in part.metrics.items():
                extra_metrics[name].append(value)
        params = [p for p in self.module.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, r.optim.grad_clip if r.optim.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        self.progress.epoch, self.progress.offset = self.stream.epoch, self.stream.offset
        self.progress.samples_seen += r.micro_batch_size * r.grad_accum * self.dist.world
        tokens = int(self.dist.all_sum(tokens))
        self.progress.tokens_seen += tokens
        metrics = {
            "loss": self.dist.all_sum(loss_sum) / global_count,
            "lr": r.optim.lr * factor,
            "grad_norm": float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm),
            "tokens": tokens,
        }
        metrics.update({name: sum(values) / len(values) for name, values in extra_metrics.items()})
        return metrics

    # ---- loop ---------------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        r = self.recipe
        writer = None
        if self.dist.main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"), purge_step=self.progress.step)
            log.info("trainable parameters: %s", self.trainable)
        losses_path = self.out / "losses.jsonl"
        if self.dist.main and losses_path.exists():  # drop steps logged after the state we resumed from
            kept = [
                line for line in losses_path.read_text().splitlines() if json.loads(line)["step"] <= self.progress.step
            ]
            losses_path.write_text("".join(line + "\n" for line in kept))
        bar = tqdm(total=r.max_steps, initial=self.progress.step, desc=r.name, disable=not self.dist.main, unit="step")
        last: dict[str, float] = {}
        end = r.max_steps if r.stop_after is None else r.stop_after
        while self.progress.step < end:
            start = time.perf_counter()
            last = self.step()
            last["tokens_per_s"] = last["tokens"] / (time.perf_counter() - start)
            if self.dist.main:
                for key, value in last.items():
                    writer.add_scalar(f"train/{key}", value, self.progress.step)
                with losses_path.open("a") as f:
                    f.write(json.dumps({"step": self.progress.step, **last}) + "\n")
                bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}")
            bar.update(1)
            if self.progress.step % r.save_every == 0 or self.progress.step == end:
                self.save_state()
        bar.close()
        if writer is not None:
            writer.close()
        if self.dataset.stats.counts and self.dist.main:
            log.warning("data: %s", self.dataset.stats.summary())
        return last

    # ---- saving -------------------------------------------------------------------------------------
    def _full_states(self, module: torch.nn.Module):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(module, options=options), get_optimizer_state_dict(
            self.module, self.optimizer, options=options
        )

    def save_state(self) -> None:
        weights, optim_state = self._full_states(self.module)
        if self.dist.main:
            save_state(self.out / "state", weights, optim_state, self.progress)
        self.dist.barrier()

    def save_model(self) -> Path:
        """Export the trained model in the official layout to `output_dir/model`."""
        from nvila.checkpoint import build_model

        weights, _ = self._full_states(self.model)
        target = self.out / "model"
        if self.dist.main:
            export = build_model(self.processor.config, init=False)
            missing, unexpected = export.load_state_dict(weights, strict=False)
            if unexpected or set(missing) - {"llm.lm_head.weight"}:
                raise RuntimeError(f"export mismatch: missing {missing}, unexpected {unexpected}")
            if self.processor.config.text.tie_word_embeddings:
                export.llm.tie_weights()
            save(export, self.processor.tokenizer, target, overwrite=True)
        self.dist.barrier()
        return target

    def cleanup(self) -> None:
        shutdown(self.dist)


def run_recipe(recipe: Recipe, *, resume: bool = False) -> dict[str, float]:
    """Setup, train, export, cleanup; returns the last step's metrics."""
    trainer = Trainer(recipe, resume=resume)
    trainer.setup()
    try:
        metrics = trainer.train()
        trainer.save_model()
    finally:
        trainer.cleanup()
    return metrics
