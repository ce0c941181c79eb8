"""Speed of quantized layers and of a quantized model against float, measured in one run.

    python benchmarks/quant_speed.py --quantized small-q/                 # shipped model vs its quantized copy
    python benchmarks/quant_speed.py --quantized ckpt-q/ --model ckpt/ --device cuda --json quant.json

Part 1, layers: one linear at NVILA-8B shapes (LLM 3584 -> 3584 and 3584 -> 18944, tower 1152 -> 4304) for
1 token (decoding) and 256 tokens (prefill): float32 `nn.Linear` vs `AWQLinear` (int4 weight dequantized on
every call, then a float matmul) vs `W8A8Linear` (int8 x int8 -> int32 `torch._int_mm`).
Part 2, model: greedy generation of --tokens new tokens on the sample image through transformers' `generate()`
(`pipeline.generate_steps`, every step timed), float vs quantized checkpoint (time to the first token and per
decoded token).
Prints absolute times, ratios against float measured in the same run, and the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nvila.assets import DEFAULT_MODEL, SAMPLE_IMAGE
from nvila.generation import GenerationOptions
from nvila.loader import load
from nvila.ops.quantized import AWQLinear, W8A8Linear
from nvila.pipeline import generate_steps

SHAPES = {"llm o 3584->3584": (3584, 3584), "llm up 3584->18944": (3584, 18944), "tower fc1 1152->4304": (1152, 4304)}


def best_of(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Fastest of `repeats` timed calls (after one warm-up), in milliseconds."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


@torch.no_grad()
def layers(device: torch.device, repeats: int) -> None:
    header = ("tokens", "float ms", "w4a16 ms", "w8a8 ms", "w4a16/fp", "w8a8/fp")
    print(f"{'layer':24s} " + " ".join(f"{h:>9s}" for h in header))
    for name, (n_in, n_out) in SHAPES.items():
        fp = nn.Linear(n_in, n_out).to(device)
        awq = AWQLinear.from_linear(fp, 128) if n_in % 128 == 0 else None
        w8 = W8A8Linear.from_linear(fp)
        for tokens in (1, 256):
            x = torch.randn(tokens, n_in, device=device)
            t_fp = best_of(lambda: fp(x), repeats, device)  # noqa: B023
            t_awq = best_of(lambda: awq(x), repeats, device) if awq else float("nan")  # noqa: B023
            t_w8 = best_of(lambda: w8(x), repeats, device)  # noqa: B023
            print(f"{name:24s} {tokens:9d} {t_fp:9.2f} {t_awq:9.2f} {t_w8:9.2f} {t_awq / t_fp:9.2f} {t_w8 / t_fp:9.2f}")


def model(path: str, device: torch.device, tokens: int, repeats: int) -> tuple[float, float]:
    """(ms to the first token, ms per later token) of greedy generation on the sample image: the fastest of
    `repeats` runs after a warm-up, each timing every step of one `generate()` (the end token is ignored, so every
    run decodes `tokens` tokens)."""
    loaded, processor = load(path, device=str(device))
    inputs = processor(text="How many circles are there?", images=[SAMPLE_IMAGE])
    options = GenerationOptions(max_new_tokens=tokens)
    runs = []
    for _ in range(repeats + 1):
        start, times = time.perf_counter(), []
        for _ in generate_steps(loaded, inputs, options, eos_token_ids=[], pad_token_id=processor.pad_token_id):
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())
        runs.append((1e3 * (times[0] - start), 1e3 * (times[-1] - times[0]) / max(1, len(times) - 1)))
    measured = runs[1:]
    return min(first for first, _ in measured), min(token for _, token in measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quantized", required=True, help="output folder of `nvila quantize`")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="its float checkpoint (default: shipped)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per generation")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-layers", action="store_true", help="only the model comparison")
    parser.add_argument("--json", type=Path, help="also write the model comparison here")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")  # fmt: skip
    if not args.skip_layers:
        layers(device, args.repeats)
    fp_first, fp_token = model(args.model, device, args.tokens, args.repeats)
    q_first, q_token = model(args.quantized, device, args.tokens, args.repeats)
    print(f"model float:     first token {fp_first:8.1f} ms, then {fp_token:7.2f} ms/token")
    print(f"model quantized: first token {q_first:8.1f} ms, then {q_token:7.2f} ms/token "
          f"({q_first / fp_first:.2f}x, {q_token / fp_token:.2f}x float)")  # fmt: skip
    if args.json:
        times = {"float": (fp_first, fp_token), "quantized": (q_first, q_token)}
        rows = {name: {"first_token_ms": first, "ms_per_token": token} for name, (first, token) in times.items()}
        args.json.write_text(json.dumps({"device": str(device), "tokens": args.tokens, **rows}, indent=1))


if __name__ == "__main__":
    main()
