"""The `nvila eval` sub-command: arguments and dispatch to the runner or to a comparison; nothing else."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from nvila.argtypes import MODEL_HELP, add_video_options, positive_int

EVAL_HELP = (
    "score a model on a benchmark (local files), or compare two result folders\n\nexamples:\n"
    "  nvila eval --model ckpt/ --benchmark synth --data data/synth-suite --out results/ckpt/synth\n"
    "  nvila eval --model ckpt/ --benchmark docvqa --data data/docvqa/val --limit 200 --batch-size 16\n"
    "  nvila eval --model ckpt/ --benchmark activitynet_rtl --data data/anet --frame-sampling linspace "
    "--video-timestamps\n"
    "  nvila eval --compare results/a/synth results/b/synth --out results/a-vs-b\n"
    "benchmarks: docvqa, infovqa, textvqa, chartqa, ai2d, vqav2, videomme, activitynet_rtl, synth "
    "(see docs/evaluation.md for the files each expects)"
)


def add_eval_args(p: argparse.ArgumentParser) -> None:
    from nvila.eval.benchmarks import BENCHMARKS

    p.add_argument("--model", help=f"{MODEL_HELP} (default: the shipped model)")
    p.add_argument("--benchmark", metavar="NAME", help=f"one of: {', '.join(BENCHMARKS)}")
    p.add_argument("--data", metavar="DIR", help="the benchmark's local files (a folder, or its annotation file)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate the first N samples only")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="prompts per batch (default: 8)")
    p.add_argument("--out", metavar="DIR", help="result folder; rerun to resume (default: results/<model>/<benchmark>)")
    p.add_argument(
        "--max-new-tokens", type=positive_int, metavar="N", help="answer length cap (default: the benchmark's)"
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default: float32)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_video_options(p, scope="video benchmarks only (videomme, activitynet_rtl, synth events)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="print two result folders side by side and plot them")


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate a model on a benchmark (resumable), or compare two result folders."""
    if args.compare:
        from nvila.eval.report import compare

        name = "-vs-".join(_slug("_".join(Path(a).resolve().parts[-2:])) for a in args.compare)
        out = Path(args.out) if args.out else Path("results") / "compare" / name
        print(compare(*args.compare, out))
        print(f"wrote {out / 'compare.md'}")
        return 0
    if not args.benchmark or not args.data:
        print("nvila eval: error: give --benchmark NAME and --data DIR (or --compare A B)", file=sys.stderr)
        return 2

    from nvila.assets import DEFAULT_MODEL
    from nvila.eval.benchmarks import get_benchmark
    from nvila.eval.runner import EvalSettings, run_benchmark

    benchmark = get_benchmark(args.benchmark)  # fail on a bad name before anything is loaded
    model = str(args.model or DEFAULT_MODEL)
    out = args.out or str(Path("results") / _slug(model) / benchmark.name)
    settings = EvalSettings(
        benchmark=benchmark.name,
        data=args.data,
        out=out,
        model=model,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        dtype=args.dtype,
        video_timestamps=args.video_timestamps,
        frame_sampling=args.frame_sampling,
    )
    summary = run_benchmark(settings, progress=False if args.no_progress else None)
    print(
        f"{benchmark.name}: {summary['metric']} {100 * summary['score']:.1f}% over {summary['count']} samples "
        f"({summary['no_answer']} without an answer); wrote {out}/summary.json and report.md"
    )
    for name, task in summary["tasks"].items():
        base = (summary.get("majority_baseline") or {}).get(name)
        extra = f", majority baseline {100 * base:.1f}%" if base is not None else ""
        print(f"  {name}: {100 * task['score']:.1f}% of {task['count']}{extra}")
    return 0


def _slug(path: str) -> str:
    """A folder name for a model or result path."""
    name = Path(path.rstrip("/")).name or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
