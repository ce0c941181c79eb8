"""Training step time with FP8 LLM linears (recipe `fp8: true`) against BF16, without and with activation checkpointing.

    python benchmarks/fp8_step.py              # an NVIDIA GPU of compute capability >= 8.9 (H100, H200, L40S)
    python benchmarks/fp8_step.py --compile    # each LLM decoder layer torch.compile'd, in both arms
    python benchmarks/fp8_step.py --emulate    # anywhere: torchao's emulation, tiny preset at 56 px (numerics only)

Model: a randomly initialised preset (default nvila-lite-2b: SigLIP 400M + a Qwen2.5-1.5B-sized LLM, ~2B
parameters, ~32 GB of fp32 weights, gradients and AdamW moments; the 8B presets need ~130 GB for those alone
and do not fit one GPU without sharding), everything trainable, built by the real `Trainer.setup()` from a recipe
with `bf16: true` and `fp8: false` (BF16 arm) or `fp8: true` (FP8 arm: torchao float8 on the LLM's linears
except lm_head, see nvila.train.fp8). Every arm starts from the same weights (seed 0) and trains on one batch:
--batch rows of a noise image and random answer tokens, --tokens long. A step is forward, backward, clipping
and AdamW; after --warmup steps, --steps steps are timed one by one between `torch.cuda.synchronize()` calls
and the fastest is reported (`best_of` from quant_speed.py). The arms run one after the other, each freed
before the next. The paper (NVILA, arXiv 2412.04468) reports FP8 at 2.0x the BF16 speed without activation
checkpointing and 1.18x with it, for its 8B model.

Without --compile the linears run as the trainer runs them (eager): torchao's scaling and casts are separate
kernels, which eat part of the float8 matmuls' gain; torchao's own speed-ups are measured with torch.compile.
`--emulate` replaces `fp8: true` by `fp8: emulate` (float8 casts, float32 matmuls: any device). It checks the
numerics (compare the arms' losses) and says nothing about speed. Its default model is the tiny preset with
the trainer tests' 56 px tiles; on a CPU both arms run without bf16 autocast (slow on CPUs without bf16 units),
so the baseline is FP32.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from packing import ChosenBatchTrainer
from PIL import Image
from quant_speed import best_of

from nvila.data.collate import TrainBatch, collate_padded
from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import PRESETS, from_name
from nvila.train.fp8 import check_fp8
from nvila.train.recipe import recipe_from_dict

#: The paper's FP8 / BF16 training speed ratios, without / with activation checkpointing.
PAPER = {False: 2.0, True: 1.18}
#: `--emulate`'s default model: the tiny preset at the trainer tests' geometry (a few seconds per step on a CPU).
EMULATE_MODEL = {"preset": "tiny", "overrides": {"vision": {"image_size": 56}, "s2_scales": [56, 112, 168]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, help="model (default: nvila-lite-2b; tiny at 56 px emulated)")
    parser.add_argument("--batch", type=int, default=4, help="rows per step (default: 4)")
    parser.add_argument("--tokens", type=int, help="tokens per row, visual ones included (default: 2048; 256 emulated)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per arm")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per arm")
    parser.add_argument("--checkpointing", choices=["both", "off", "on"], default="both", help="activation ckpt")
    parser.add_argument("--compile", action="store_true", help="torch.compile each LLM decoder layer (both arms)")
    parser.add_argument("--emulate", action="store_true", help="fp8: emulate (numerics only, any device)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not args.emulate and device.type != "cuda":
        parser.error(
            "no CUDA GPU: this benchmark times FP8 against BF16 on an NVIDIA GPU of compute capability >= 8.9. "
            "--emulate runs torchao's FP8 emulation here instead: it checks numerics, not speed"
        )
    try:
        check_fp8("emulate" if args.emulate else True, device)
    except ConfigError as e:
        parser.error(str(e))
    model = {"preset": args.preset} if args.preset else EMULATE_MODEL if args.emulate else {"preset": "nvila-lite-2b"}
    args.preset = model["preset"]
    args.tokens = args.tokens or (256 if args.emulate else 2048)
    if args.emulate:
        print("--emulate: float8 casts with float32 matmuls measure FP8 numerics, not speed (the times below are "
              "emulation overhead); compare the arms' losses.", file=sys.stderr)  # fmt: skip
    ckpt = {"both": [False, True], "off": [False], "on": [True]}[args.checkpointing]
    results = []
    with tempfile.TemporaryDirectory(prefix="nvila-fp8-") as tmp:
        data = write_records(Path(tmp))
        batch = None
        for checkpointing in ckpt:
            for fp8 in (False, "emulate" if args.emulate else True):
                arm = Arm(fp8, checkpointing, bf16=device.type == "cuda")
                batch = run_arm(arm, model, args, device, data, Path(tmp) / f"run{len(results)}", batch)
                results.append(arm)
                gc.collect()  # the arm's trainer is gone: free its memory before the next
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                print(f"  {arm.name}: {arm.step_ms:.0f} ms/step, loss {arm.losses[0]:.4f}", file=sys.stderr)
    report(results, args, device, batch)
    if args.json:
        args.json.write_text(json.dumps([a.__dict__ for a in results], indent=1))


@dataclass
class Arm:
    fp8: bool | str
    checkpointing: bool
    bf16: bool  #: bf16 autocast (on CUDA; off on CPUs)
    step_ms: float = float("nan")
    peak_gib: float = float("nan")
    fp8_layers: int = 0
    losses: list[float] = field(default_factory=list)  #: of every step, warm-up included

    @property
    def name(self) -> str:
        base = "FP8" if self.fp8 is True else "FP8 emulated" if self.fp8 else "BF16" if self.bf16 else "FP32"
        return base + (" + act. ckpt" if self.checkpointing else "")


class BenchTrainer(ChosenBatchTrainer):
    """The recipe's `Trainer` on the benchmark's batch, with the model built directly on the device."""

    def _build_model(self):
        spec = self.recipe.model
        return random_pretrained(from_name(spec.preset).with_overrides(spec.overrides), seed=spec.seed,
                                 device=self.device)  # fmt: skip


def write_records(folder: Path) -> Path:
    """A one-record file for `Trainer.setup()` (the steps train on `random_batch`, not on it)."""
    Image.new("RGB", (32, 32), "gray").save(folder / "0.png")
    record = {"id": "b0", "image": "0.png", "conversations": [{"from": "human", "value": "<image>\nDescribe."},
                                                              {"from": "gpt", "value": "gray"}]}  # fmt: skip
    (folder / "train.jsonl").write_text(json.dumps(record) + "\n")
    return folder / "train.jsonl"


def random_batch(processor, rows: int, tokens: int, seed: int = 0) -> TrainBatch:
    """`rows` samples of a noise image (the preset's tile size) and a random answer, `tokens` long each."""
    rng = np.random.default_rng(seed)
    tokenizer, side = processor.tokenizer, processor.config.tile_size
    special = set(tokenizer.all_special_ids) | {processor.config.image_token_id, processor.config.video_token_id}
    ordinary = np.array([i for i in range(len(tokenizer)) if i not in special])
    samples = []
    for _ in range(rows):
        image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        messages = [{"role": "user", "content": "<image>\nDescribe the image."}, {"role": "assistant", "content": "x"}]
        sample = processor.encode_messages(messages, [image])
        answer = rng.choice(ordinary, max(1, tokens - len(sample.input_ids))).tolist()
        samples.append(replace(sample, input_ids=sample.input_ids + answer, labels=sample.labels + answer))
    return collate_padded(samples, processor.pad_token_id, processor.config)


def run_arm(
    arm: Arm, model: dict, args, device: torch.device, data: Path, out: Path, batch: TrainBatch | None
) -> TrainBatch:
    """Set up the arm's trainer, time its steps into `arm`; returns the batch (made by the first arm)."""
    recipe = recipe_from_dict({
        "name": arm.name, "output_dir": str(out), "model": model, "data": {"train": str(data)},
        "trainable": {"vision_tower": True, "mm_projector": True, "llm": True}, "optim": {"lr": 1e-5},
        "micro_batch_size": args.batch, "max_steps": 1000, "bf16": arm.bf16, "fp8": arm.fp8,
        "activation_checkpointing": arm.checkpointing, "device": device.type,
    })  # fmt: skip
    trainer = BenchTrainer(recipe)
    trainer.setup()
    trainer.batch = batch if batch is not None else random_batch(trainer.processor, args.batch, args.tokens)
    arm.fp8_layers = trainer.fp8_layers
    if args.compile:
        for layer in trainer.model.llm.model.layers:
            layer.compile()
    for _ in range(args.warmup - 1):  # best_of runs one more
        arm.losses.append(trainer.step()["loss"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    arm.step_ms = best_of(lambda: arm.losses.append(trainer.step()["loss"]), args.steps, device)
    if device.type == "cuda":
        arm.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    trainer.cleanup()
    return trainer.batch


def report(arms: list[Arm], args, device: torch.device, batch: TrainBatch) -> None:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    precision = ("bf16 autocast" if arms[0].bf16 else "float32") + (", LLM layers compiled" if args.compile else "")
    shape = f"{args.batch} x {batch.input_ids.shape[1]} tokens"
    print(f"\n# training step, {args.preset}: {shape}, everything trained, {precision}")
    print(f"device: {gpu}; torch {torch.__version__}; {args.warmup} warm-up + {args.steps} timed steps per arm\n")
    print("| arm | FP8 linears | fastest step (ms) | tokens/s | peak GiB | loss step 1 | loss last |")
    print("|---|---|---|---|---|---|---|")
    tokens = batch.input_ids.numel()
    for a in arms:
        peak = "-" if a.peak_gib != a.peak_gib else f"{a.peak_gib:.1f}"  # NaN off CUDA
        print(f"| {a.name} | {a.fp8_layers} | {a.step_ms:.0f} | {tokens / a.step_ms * 1e3:,.0f} | {peak} | "
              f"{a.losses[0]:.4f} | {a.losses[-1]:.4f} |")  # fmt: skip
    print()
    for checkpointing in sorted({a.checkpointing for a in arms}):
        bf16, fp8 = (a for a in arms if a.checkpointing == checkpointing)
        what = "with" if checkpointing else "without"
        drift = statistics.fmean(abs(x - y) / y for x, y in zip(fp8.losses, bf16.losses))
        line = f"{what} activation checkpointing: FP8 losses differ by {drift:.1e} (mean relative, all steps)"
        if fp8.fp8 is True:
            line += f"; FP8 speed / BF16 speed = {bf16.step_ms / fp8.step_ms:.2f}x (paper: {PAPER[checkpointing]}x)"
        print(line)
    if args.emulate:
        print("emulated FP8: the times are emulation overhead, not FP8 speed")


if __name__ == "__main__":
    main()
