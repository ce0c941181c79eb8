"""Peak memory of one fine-tuning step: full vs LoRA vs LayerNorm + LoRA vs QLoRA, through `nvila finetune`'s trainer.

    python benchmarks/finetune_memory.py                   # the `mid` size (~0.42B parameters), CPU
    python benchmarks/finetune_memory.py --size small      # a quick check (~25M)
    python benchmarks/finetune_memory.py --device cuda     # on an NVIDIA GPU: CUDA peak too, QLoRA included
    python benchmarks/finetune_memory.py --device cuda --size 2b --cases full,ln+lora/bf16,qlora   # nvila-lite-2b sizes

A random-weight model of the chosen size is saved once in the official layout (bf16), with a records file of
noise images and long answers (--tokens per sample). Every case runs in a fresh subprocess: the real
`FinetuneTrainer.setup()` (load, apply the method, build AdamW), then the peak counter is reset (Linux:
malloc_trim + /proc/self/clear_refs; CUDA: reset_peak_memory_stats) and one training step runs (forward,
backward, AdamW step, which allocates the moments). Reported: the step's peak resident memory (VmHWM; on CUDA
also max_memory_allocated), resident memory before the step, trainable parameters, the step's time, and ratios
against full fine-tuning measured in the same run. `floor` is the interpreter with torch, transformers, peft and
nvila imported: memory every case pays whatever the method.
Cases (all with the tower at lr x 0.1; the projector always trains):
- full: every weight trainable, fp32 weights, gradients and AdamW moments
- lora: LoRA (r 16) on the LLM's attention and MLP projections, tower frozen, fp32 base
- ln+lora: lora plus the tower's LayerNorm weights and biases (NVILA's recipe), fp32 base
- ln+lora/bf16: ln+lora with the frozen base held in bf16 and bf16 autocast (on CPUs without bf16 matmul
  units, e.g. AVX2-only, this case is several times slower: memory is the point here)
- qlora: ln+lora over a 4-bit NF4 LLM (bitsandbytes); CUDA only, skipped on CPU with a note
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {  # name -> (method, vision, base dtype)
    "full": ("full", "full", "float32"),
    "lora": ("lora", "frozen", "float32"),
    "ln+lora": ("lora", "layernorm", "float32"),
    "ln+lora/bf16": ("lora", "layernorm", "bfloat16"),
    "qlora": ("qlora", "layernorm", "bfloat16"),
}
#: LLM and tower sizes; "mid": a ViT-B-sized tower (224 px, 64 visual tokens) and a 24-layer 1024-wide decoder;
#: "2b": nvila-lite-2b's SigLIP SO400M (448 px) and Qwen2.5-1.5B-sized decoder (a GPU's size: ~2B parameters).
SIZES = {
    "2b": {
        "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                   "image_size": 448, "patch_size": 14},
        "text": {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                 "num_attention_heads": 12, "num_key_value_heads": 2},
    },
    "mid": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "image_size": 224, "patch_size": 14},
        "text": {"vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 24,
                 "num_attention_heads": 16, "num_key_value_heads": 4},
    },
    "small": {
        "vision": {"hidden_size": 192, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 3,
                   "image_size": 112, "patch_size": 14},
        "text": {"vocab_size": 8192, "hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 8,
                 "num_attention_heads": 6, "num_key_value_heads": 2},
    },
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="mid")
    parser.add_argument("--batch", type=int, default=1, help="samples per step (default: 1)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per sample, visual ones included")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "nvila-ft-bench")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(run_case(args)))
        return
    prepare(args)
    results = {"floor": subprocess_case(args, "floor")}
    for name in args.cases.split(","):
        if name == "qlora" and not args.device.startswith("cuda"):
            results[name] = {"skipped": "QLoRA needs bitsandbytes 4-bit kernels on CUDA; this run is on the CPU"}
        else:
            results[name] = subprocess_case(args, name)
        print(f"  {name}: {short(results[name])}", file=sys.stderr)
    report(args, results)


# ---- the model and data ---------------------------------------------------------------------------------------
def model_config(size: str):
    from nvila.models.nvila.configuration_nvila import NVILAConfig, from_name

    data = from_name("tiny").to_dict()
    data["vision"].update(SIZES[size]["vision"])
    data["text"].update(SIZES[size]["text"])
    data.update(image_aspect_ratio="resize", s2_scales=[SIZES[size]["vision"]["image_size"]], name=f"bench-{size}")
    return NVILAConfig.from_dict(data)


def prepare(args) -> None:
    """Save the model and a records file under --dir (once per size and token count)."""
    import numpy as np
    from PIL import Image

    from nvila.checkpoint import save
    from nvila.factory import SAMPLE_TEXT, random_pretrained

    folder = args.dir / args.size
    if not (folder / "model" / "config.json").is_file():
        print(f"building and saving the {args.size} model in {folder} ...", file=sys.stderr)
        model, processor = random_pretrained(model_config(args.size))
        save(model, processor.tokenizer, folder / "model", overwrite=True)
        del model
    data = folder / f"data-{args.tokens}.jsonl"
    if data.is_file():
        return
    from nvila.loader import load

    _, processor = load(folder / "model", dtype="bfloat16")
    side = processor.config.tile_size
    lines, words = [], SAMPLE_TEXT.split()
    for i in range(8):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        answer = ""
        while True:  # grow the answer until the sample reaches --tokens
            longer = (answer + " " + words[len(answer.split()) % len(words)]).strip()
            messages = [{"role": "user", "content": "<image>\nDescribe the image."},
                        {"role": "assistant", "content": longer}]  # fmt: skip
            if len(processor.encode_messages(messages, [folder / f"{i}.png"]).input_ids) > args.tokens:
                break
            answer = longer
        conversations = [{"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": answer}]
        lines.append(
            json.dumps({"id": f"b{i}", "source": "bench", "image": f"{i}.png", "conversations": conversations})
        )
    data.write_text("\n".join(lines) + "\n")


# ---- one case -------------------------------------------------------------------------------------------------
def memory_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def run_case(args) -> dict:
    import gc

    import torch

    import nvila.finetune  # noqa: F401 (the imports every case pays)

    if args.case == "floor":
        return {"peak_gib": memory_kib("VmHWM") / 2**20, "rss_gib": memory_kib("VmRSS") / 2**20}
    from nvila.finetune import FinetuneSpec, FinetuneTrainer, finetune_recipe

    method, vision, base_dtype = CASES[args.case]
    folder = args.dir / args.size
    spec = FinetuneSpec(method=method, vision=vision, base_dtype=base_dtype)
    out = Path(tempfile.mkdtemp(prefix=f"case-{args.case.replace('/', '-')}-", dir=args.dir))
    recipe = finetune_recipe(
        spec, str(folder / "model"), str(folder / f"data-{args.tokens}.jsonl"), str(out),
        max_steps=10, micro_batch_size=args.batch, max_length=args.tokens + 64, device=args.device,
        bf16=base_dtype == "bfloat16",
    )  # fmt: skip
    trainer = FinetuneTrainer(recipe, spec)
    trainer.setup()
    gc.collect()
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = memory_kib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    metrics = trainer.step()
    seconds = time.perf_counter() - start
    result = {
        "peak_gib": memory_kib("VmHWM") / 2**20,
        "before_gib": before / 2**20,
        "step_s": seconds,
        "tokens": metrics["tokens"],
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "trainable": sum(trainer.trainable.values()),
    }
    if trainer.device.type == "cuda":
        result["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def subprocess_case(args, name: str) -> dict:
    command = [sys.executable, __file__, "--case", name, "--size", args.size, "--batch", str(args.batch),
               "--tokens", str(args.tokens), "--device", args.device, "--dir", str(args.dir)]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1][len("RESULT ") :])


# ---- the report -----------------------------------------------------------------------------------------------
def short(result: dict) -> str:
    if "peak_gib" not in result:
        return result.get("skipped") or result.get("error", "?")
    return f"peak {result['peak_gib']:.2f} GiB" + (f", step {result['step_s']:.1f} s" if "step_s" in result else "")


def report(args, results: dict) -> None:
    floor = results["floor"]["peak_gib"]
    full = results.get("full", {}).get("peak_gib")
    print(
        f"# fine-tuning memory, one step: size {args.size}, batch {args.batch} x ~{args.tokens} tokens, {args.device}"
    )
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    print(f"machine: {machine}, python {platform.python_version()}")
    print(f"floor (interpreter + torch/transformers/peft/nvila): {floor:.2f} GiB\n")
    print("| case | params | trainable | peak RSS in step (GiB) | vs full | vs full above floor | step (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if name == "floor":
            continue
        if "peak_gib" not in r:
            print(f"| {name} | | | {r.get('skipped') or 'error: ' + r.get('error', '?')} | | | |")
            continue
        ratio = f"{r['peak_gib'] / full:.3f}" if full else "-"
        above = f"{(r['peak_gib'] - floor) / (full - floor):.3f}" if full else "-"
        cuda = f" (CUDA {r['cuda_peak_gib']:.2f})" if "cuda_peak_gib" in r else ""
        print(f"| {name} | {r['params'] / 1e6:.0f}M | {r['trainable'] / 1e6:.2f}M | {r['peak_gib']:.2f}{cuda} "
              f"| {ratio} | {above} | {r['step_s']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
