"""Decode throughput and time to first token: the batching engine (`nvila.engine`) against transformers-style
generation, on the same model in the same run.

    python benchmarks/engine_vs_transformers.py                       # the shipped small model, CPU
    python benchmarks/engine_vs_transformers.py --concurrency 1,8 --tokens 16 --repeats 1   # quicker
    python benchmarks/engine_vs_transformers.py --preset nvila-lite-2b --device cuda --dtype bfloat16 --compile

Workload: C requests arrive together, each a question about its own image (all images differ, so the vision
cache never hits), greedy, with an answer budget drawn between --tokens/2 and 3 --tokens/2 new tokens (the end token is
ignored, like vLLM's --ignore-eos, so every method does the same work; --stop-at-eos to stop there). Methods:
- engine: `InferenceEngine` (preallocated KV cache, continuous batching) with --max-batch slots (default: the
  largest C); the requests are encoded and submitted one after another, as a server would;
- sequential: transformers' `model.generate()` (as `nvila generate` runs it: `pipeline.generate_steps`, a
  DynamicCache), one request after another, as the server ran before the engine;
- batched: `model.generate()` on all C prompts as one left-padded batch (static batching: nobody gets a
  token before the whole batch is prefilled, and the batch runs until its longest answer ends).
Per request: TTFT = first token time - arrival; decode rate = (tokens - 1) / (last token time - first). Per
run: throughput = all tokens / wall time. The table shows medians over requests (and over --repeats runs)
and ratios against the engine measured in the same run; --json writes every number. Preprocessing (chat
template, tiling) is inside every TTFT. On a shared CPU the numbers are noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nvila.engine.config import EngineConfig
from nvila.engine.core import InferenceEngine
from nvila.engine.events import Failed, Finished, Step
from nvila.generation import GenerationOptions, TextStream
from nvila.pipeline import generate_steps

QUESTIONS = [
    "How many circles are there?",
    "What colour is the square?",
    "Describe this image in detail.",
    "Which shape is the largest? Answer with one word.",
]


@dataclass
class Run:
    """One method at one concurrency: per-request token times (seconds after arrival) and answers."""

    token_times: list[list[float]]
    answers: list[str]
    wall_s: float

    @property
    def tokens(self) -> int:
        return sum(len(t) for t in self.token_times)

    @property
    def ttft_s(self) -> list[float]:
        return [t[0] for t in self.token_times if t]

    @property
    def decode_tok_s(self) -> list[float]:
        return [(len(t) - 1) / (t[-1] - t[0]) for t in self.token_times if len(t) > 1 and t[-1] > t[0]]


@dataclass
class Summary:
    method: str
    concurrency: int
    ttft_median_s: float
    decode_tok_s_median: float  #: per request
    throughput_tok_s: float  #: all requests together, median over repeats
    tokens: int
    same_answers_as_sequential: bool
    runs: list[dict] = field(default_factory=list)


def load(args: argparse.Namespace):
    dtype = getattr(torch, args.dtype)
    if args.preset:
        from nvila.factory import random_pretrained

        return random_pretrained(args.preset, device=args.device, dtype=dtype)
    from nvila.assets import DEFAULT_MODEL
    from nvila.loader import load as load_checkpoint

    return load_checkpoint(args.model or DEFAULT_MODEL, device=args.device, dtype=dtype)


@dataclass
class Request:
    prompt: str
    images: list[Image.Image]
    max_new_tokens: int


def workload(n: int, seed: int, tokens: int) -> list[Request]:
    """n questions, each about its own random image, each with an answer budget in [tokens/2, 3 tokens/2]."""
    rng = np.random.default_rng(seed)
    requests = []
    for k in range(n):
        width, height = int(rng.integers(120, 400)), int(rng.integers(120, 400))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        budget = int(rng.integers(max(1, tokens // 2), tokens * 3 // 2 + 1))
        requests.append(Request(QUESTIONS[k % len(QUESTIONS)], [Image.fromarray(pixels, "RGB")], budget))
    return requests


def encode(processor, request: Request):
    return processor.encode_messages(
        [{"role": "user", "content": request.prompt}], request.images, add_generation_prompt=True
    )


def run_engine(engine: InferenceEngine, requests: list[Request]) -> Run:
    processor = engine.processor
    times: list[list[float]] = [[] for _ in requests]
    answers = ["" for _ in requests]
    errors: list[BaseException] = []
    left = threading.Semaphore(0)
    start = time.perf_counter()

    def recorder(k: int):
        def on_event(event) -> None:
            if isinstance(event, Step):
                if event.token:
                    times[k].append(time.perf_counter() - start)
                answers[k] += event.text
            elif isinstance(event, Failed):
                errors.append(event.error)
            if isinstance(event, Finished | Failed):
                left.release()

        return on_event

    for k, request in enumerate(requests):
        engine.submit(encode(processor, request), GenerationOptions(max_new_tokens=request.max_new_tokens), recorder(k))
    for _ in requests:
        left.acquire()
    if errors:
        raise errors[0]
    return Run(times, [a.strip() for a in answers], time.perf_counter() - start)


def _generate(model, processor, requests: list[Request], start: float) -> tuple[list, list[str]]:
    """`model.generate()` on `requests` as one left-padded batch (`generate_steps`, detokenised with the pipeline's
    TextStream): per-row token times and answers. The batch runs until its longest answer ends."""
    inputs = processor([r.prompt for r in requests], [r.images for r in requests])
    eos = set(processor.eos_token_ids)
    times: list[list[float]] = [[] for _ in requests]
    streams = [TextStream([]) for _ in requests]
    answers = ["" for _ in requests]
    options = GenerationOptions(max_new_tokens=max(r.max_new_tokens for r in requests))
    steps = generate_steps(model, inputs, options, processor.eos_token_ids, processor.pad_token_id)
    try:
        for step in steps:
            now = time.perf_counter() - start
            for row, token in enumerate(step.tolist()):
                stream = streams[row]
                if stream.done:
                    continue
                times[row].append(now)
                answers[row] += stream.push(token, eos, processor.decode)
                if len(times[row]) == requests[row].max_new_tokens:
                    answers[row] += stream.finish(processor.decode)
            if all(s.done for s in streams):
                break
    finally:
        steps.close()
    return times, [a.strip() for a in answers]


def run_sequential(model, processor, requests: list[Request]) -> Run:
    start = time.perf_counter()
    times, answers = [], []
    for request in requests:
        t, a = _generate(model, processor, [request], start)
        times += t
        answers += a
    return Run(times, answers, time.perf_counter() - start)


def run_batched(model, processor, requests: list[Request]) -> Run:
    start = time.perf_counter()
    times, answers = _generate(model, processor, requests, start)
    return Run(times, answers, time.perf_counter() - start)


def summarize(method: str, concurrency: int, runs: list[Run], reference: list[Run] | None) -> Summary:
    same = reference is None or all(r.answers == ref.answers for r, ref in zip(runs, reference))
    return Summary(
        method=method,
        concurrency=concurrency,
        ttft_median_s=statistics.median(t for r in runs for t in r.ttft_s),
        decode_tok_s_median=statistics.median([d for r in runs for d in r.decode_tok_s] or [float("nan")]),
        throughput_tok_s=statistics.median(r.tokens / r.wall_s for r in runs),
        tokens=runs[0].tokens,
        same_answers_as_sequential=same,
        runs=[asdict(r) | {"tokens": r.tokens} for r in runs],
    )


def table(summaries: list[Summary]) -> str:
    lines = [
        "| C | method | TTFT median | decode tok/s per request | throughput tok/s | engine ÷ this throughput | "
        "this ÷ engine TTFT | same answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    engine = {s.concurrency: s for s in summaries if s.method == "engine"}
    for s in summaries:
        e = engine[s.concurrency]
        lines.append(
            f"| {s.concurrency} | {s.method} | {s.ttft_median_s * 1000:.1f} ms | {s.decode_tok_s_median:.1f} | "
            f"{s.throughput_tok_s:.1f} | {e.throughput_tok_s / s.throughput_tok_s:.2f} | "
            f"{s.ttft_median_s / e.ttft_median_s:.2f} | {'yes' if s.same_answers_as_sequential else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: the shipped small model)")
    parser.add_argument("--preset", help="build this preset with random weights instead (e.g. tiny, nvila-lite-2b)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated numbers of concurrent requests")
    parser.add_argument("--tokens", type=int, default=32, help="mean new tokens per request")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; medians are over all of them")
    parser.add_argument("--max-batch", type=int, help="engine slots (default: the largest concurrency)")
    parser.add_argument(
        "--max-prefill-tokens",
        type=int,
        default=EngineConfig.max_prefill_tokens,
        help="engine: padded prompt tokens per prefill forward (default: %(default)s)",
    )
    parser.add_argument("--stop-at-eos", action="store_true", help="end answers at the end token")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's decode step (CUDA)")
    parser.add_argument("--no-batched", action="store_true", help="skip the static-batch generate() method")
    parser.add_argument("--json", type=Path, default=Path("docs/performance/engine.json"), help="where to write")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    model, processor = load(args)
    if not args.stop_at_eos:
        processor = copy.copy(processor)
        processor.eos_token_ids = []
    longest = max(len(encode(processor, r).input_ids) for r in workload(max(levels), 0, args.tokens))
    config = EngineConfig(
        max_batch=args.max_batch or max(levels),
        max_len=longest + args.tokens * 3 // 2 + 8,
        max_prefill_tokens=args.max_prefill_tokens,
        compile=args.compile,
    )
    engine = InferenceEngine.from_model(model, processor, config)
    warmup = workload(2, 99, args.tokens)
    run_engine(engine, warmup)
    run_sequential(model, processor, warmup[:1])

    summaries: list[Summary] = []
    for concurrency in levels:
        runs: dict[str, list[Run]] = {"engine": [], "sequential": [], "batched": []}
        for repeat in range(args.repeats):
            requests = workload(concurrency, 1000 * concurrency + repeat, args.tokens)  # new images: no cache hits
            runs["sequential"].append(run_sequential(model, processor, requests))
            runs["engine"].append(run_engine(engine, requests))
            if concurrency > 1 and not args.no_batched:
                runs["batched"].append(run_batched(model, processor, requests))
        for method, method_runs in runs.items():
            if method_runs:
                reference = None if method == "sequential" else runs["sequential"]
                summaries.append(summarize(method, concurrency, method_runs, reference))
        print(f"C={concurrency} done", flush=True)
    engine.close()

    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "device": args.device if args.device != "cuda" else torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "model": args.preset or str(args.model or "nvila-small (shipped)"),
        "tokens": args.tokens,
        "stop_at_eos": args.stop_at_eos,
        "repeats": args.repeats,
        "engine": asdict(config),
    }
    print(table(summaries))
    print(f"\n{machine}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine, "results": [asdict(s) for s in summaries]}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
