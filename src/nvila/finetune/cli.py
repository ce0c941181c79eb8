"""`nvila finetune`: its arguments and the function that runs a fine-tuning job.

Owns: `add_finetune_args`, `run_finetune` and `HELP` for the `nvila` command's table. Does not own the job
(`nvila.finetune.trainer`).
"""

from __future__ import annotations

import argparse

from nvila.argtypes import MODEL_HELP, positive_float, positive_int

HELP = (
    "fine-tune a checkpoint: LoRA / QLoRA / full LLM, tower frozen / LayerNorm / LoRA / full\n\nexamples:\n"
    "  nvila finetune --model ckpt/ --data mine.jsonl --method lora --vision layernorm --steps 500\n"
    "  nvila finetune --model ckpt/ --data mine.jsonl --method full --vision full --vit-lr-ratio 0.05 --lr 2e-5\n"
    "  nvila finetune --model ckpt/ --data mine.jsonl --method qlora --device cuda --bf16   # NVIDIA GPU only\n"
    "  nvila finetune --model ckpt/ --data mine.jsonl --out runs/ft --resume           # continue a stopped run\n"
    "  nvila finetune --model ckpt/ --data mine.jsonl --merge  optim.warmup_ratio=0.1   # recipe overrides last\n"
    "outputs: OUT/adapters (peft format + non_lora_trainables.safetensors), OUT/model with --merge;\n"
    "see docs/finetuning.md"
)


#: The choices, spelled out so that building the parser imports no torch (a test checks them against `methods`).
METHODS = ("full", "lora", "qlora")
VISION_MODES = ("frozen", "layernorm", "lora", "full")
BASE_DTYPES = ("float32", "bfloat16")


def add_finetune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=f"the base model: {MODEL_HELP}")
    p.add_argument("--data", required=True, help="training records (.jsonl / .json) or a mixture .yaml")
    p.add_argument("--method", choices=METHODS, default="lora", help="what trains in the LLM (default: lora)")
    p.add_argument(
        "--vision", choices=VISION_MODES, default="layernorm",
        help="what trains in the vision tower (default: layernorm, its LayerNorm weights and biases only)",
    )  # fmt: skip
    p.add_argument(
        "--vit-lr-ratio",
        type=positive_float,
        default=0.1,
        metavar="R",
        help="vision tower learning rate = lr * R (default: 0.1; the paper: 5-50x below the LLM)",
    )
    p.add_argument("--lora-rank", type=positive_int, default=16, help="LoRA rank (default: 16)")
    p.add_argument("--lora-alpha", type=positive_float, default=32.0, help="LoRA alpha, scale alpha/rank (default: 32)")
    p.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on the LoRA input (default: 0)")
    p.add_argument(
        "--base-dtype",
        choices=BASE_DTYPES,
        default="float32",
        help="dtype of the frozen base weights; bfloat16 halves their memory and turns on --bf16",
    )
    p.add_argument("--steps", type=positive_int, default=1000, help="optimiser steps (default: 1000)")
    p.add_argument(
        "--stop-after",
        type=positive_int,
        metavar="N",
        help="end this job at step N, resumable with --resume (the schedule still spans --steps)",
    )
    p.add_argument("--lr", type=positive_float, help="peak learning rate (default: 2e-4 LoRA/QLoRA, 2e-5 full)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples per step and rank (default: 8)")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per step (default: 1)")
    p.add_argument("--max-length", type=positive_int, default=4096, help="tokens per packed row (default: 4096)")
    p.add_argument("--save-every", type=positive_int, default=100, help="steps between resumable states")
    p.add_argument("--out", default="runs/finetune", help="output folder (default: runs/finetune)")
    p.add_argument("--merge", action="store_true", help="also write the merged model (official layout) to OUT/model")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--seed", type=int, default=0, help="data order seed (default: 0)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. optim.warmup_ratio=0.1")


def run_finetune(args: argparse.Namespace) -> int:
    """Fine-tune `--model` on `--data`; writes adapters (and the merged model with --merge) under --out."""
    from nvila.finetune.methods import FinetuneSpec
    from nvila.finetune.trainer import finetune, finetune_recipe

    spec = FinetuneSpec(args.method, args.vision, args.lora_rank, args.lora_alpha, args.lora_dropout, args.base_dtype)
    recipe = finetune_recipe(
        spec, args.model, args.data, args.out, lr=args.lr, vit_lr_ratio=args.vit_lr_ratio, overrides=args.overrides,
        max_steps=args.steps, stop_after=args.stop_after, micro_batch_size=args.batch_size,
        grad_accum=args.grad_accum, max_length=args.max_length, save_every=args.save_every, device=args.device,
        bf16=args.bf16, seed=args.seed,
    )  # fmt: skip
    metrics, path = finetune(recipe, spec, merge=args.merge, resume=args.resume)
    if metrics:
        print(f"{recipe.name}: final loss {metrics['loss']:.4f}; written to {path}")
    return 0
