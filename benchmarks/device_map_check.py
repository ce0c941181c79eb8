"""NVILA through transformers on real devices: a `device_map` that splits the model, and the attention kernels.

    python benchmarks/device_map_check.py --model ckpt/ --devices cuda:0,cpu --json device_map.json

Loads the checkpoint with `AutoModelForImageTextToText.from_pretrained` on the first device alone (the reference),
then split: vision tower and projector on the first device, the LLM on the second (accelerate's dispatch moves the
activations between them), and on the first device with each attention implementation ("sdpa", "eager", and
"flash_attention_2" where flash-attn is installed, in bf16 as it requires). Each greedy-decodes --tokens tokens of
one question about the sample image; the JSON says, per variant, whether its tokens equal the reference's (for
flash-attention in bf16: against sdpa in bf16), and its time. Part of `scripts/gpu_acceptance.py`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import nvila  # noqa: F401  (registers NVILA with the Auto classes)
from nvila.assets import SAMPLE_IMAGE


def greedy(folder: str, tokens: int, **load: object) -> tuple[list[int], float]:
    """(greedy tokens, seconds) of one question about the sample image with the model loaded by `load`."""
    model = AutoModelForImageTextToText.from_pretrained(folder, **load)
    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor(text="How many circles are there?", images=[SAMPLE_IMAGE])
    start = time.perf_counter()
    output = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :].tolist(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a checkpoint folder (either layout) or hub id")
    parser.add_argument("--devices", default="cuda:0,cpu", help="first,second: where the tower and the LLM go")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    first, second = args.devices.split(",")
    split = {"vision_tower": first, "mm_projector": first, "llm": second}
    reference, seconds = greedy(args.model, args.tokens, dtype=torch.float32, device_map=first)
    runs = {"reference": {"device_map": first, "seconds": seconds}}
    variants = {
        "split": {"dtype": torch.float32, "device_map": split},
        "eager": {"dtype": torch.float32, "device_map": first, "attn_implementation": "eager"},
    }
    for name, load in variants.items():
        got, seconds = greedy(args.model, args.tokens, **load)
        runs[name] = {"device_map": str(load["device_map"]), "equal": got == reference, "seconds": seconds}
    if importlib.util.find_spec("flash_attn") is not None and first.startswith("cuda"):
        bf16, _ = greedy(args.model, args.tokens, dtype=torch.bfloat16, device_map=first)
        flash, seconds = greedy(
            args.model, args.tokens, dtype=torch.bfloat16, device_map=first, attn_implementation="flash_attention_2"
        )
        runs["flash_attention_2"] = {"equal_to_bf16_sdpa": flash == bf16, "seconds": seconds}
    else:
        runs["flash_attention_2"] = {"skipped": "flash-attn is not installed (or no CUDA device)"}
    args.json.write_text(json.dumps({"devices": [first, second], "tokens": args.tokens, "runs": runs}, indent=1))
    print(json.dumps(runs, indent=1))
    if not all(run.get("equal", True) for run in runs.values()):
        raise SystemExit("a variant's greedy tokens differ from the reference's")


if __name__ == "__main__":
    main()
