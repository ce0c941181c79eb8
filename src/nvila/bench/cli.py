"""`nvila bench`: its arguments and command function; the work is done in `runner` and `report`.

`add_bench_args(parser)` and `run_bench(args) -> int` plug into the `nvila` command table. Bad usage
(unknown model or case set) fails in argparse with exit code 2; a failed job raises `NVILAError`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nvila.argtypes import positive_int
from nvila.bench import CASE_SETS, MODEL_NAMES, SIZES, VARIANTS
from nvila.errors import ConfigError

log = logging.getLogger("nvila.bench")

DESCRIPTION = """\
side-by-side performance of NVILA's visual pipeline against peer VLMs (random weights, one process,
the same Qwen2 text config for every model)

examples:
  nvila bench --size small                      # CPU, minutes: writes docs/performance/small.md + plots
  nvila bench --size small --cases images --models nvila,qwen2-vl --repeats 5
  nvila bench --size 2b --cases images --repeats 1 --decode-tokens 8 --out docs/performance/real-width.md
                                                # CPU, real towers + a 1.5B LLM, one model at a time
  nvila bench --size 2b --cases images --images 1344x896 --models nvila-lite,nvila-lite-w8a8 --repeats 1
                                                # the W8A8 tower of `nvila quantize` against float, one image size
  nvila bench --size full --device cuda         # real 2B/8B-class widths in bf16, with % of GPU peak
  nvila bench --from-json docs/performance/small.json   # re-render a saved run
  nvila bench --cases videos --frames 256 --repeats 2 --merge docs/performance/small.json
                                                # add cases to a saved run, re-render the whole"""


def model_list(text: str) -> list[str]:
    """'nvila,qwen2-vl' -> ['nvila', 'qwen2-vl'], refusing names that are unknown or not installed."""
    from nvila.bench.peers import available_models

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"give at least one model from: {', '.join(MODEL_NAMES)}")
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_NAMES)}")
    missing = [n for n in names if n not in available_models()]
    if missing:
        raise argparse.ArgumentTypeError(f"{', '.join(missing)}: not in this transformers version; upgrade it")
    return list(dict.fromkeys(names))


def frame_list(text: str) -> list[int]:
    """'64,256' -> [64, 256]: video lengths in sampled frames."""
    return [positive_int(n.strip()) for n in text.split(",")]


def image_list(text: str) -> list[tuple[int, int]]:
    """'1344x896,448x448' -> [(1344, 896), (448, 448)]: image sizes as width x height in pixels."""
    sizes = []
    for item in (t.strip() for t in text.split(",")):
        width, sep, height = item.lower().partition("x")
        if not sep:
            raise argparse.ArgumentTypeError(f"image size {item!r} is not WIDTHxHEIGHT, e.g. 1344x896")
        sizes.append((positive_int(width), positive_int(height)))
    return sizes


def add_bench_args(p: argparse.ArgumentParser) -> None:
    if not p.description:
        p.description = DESCRIPTION
    p.add_argument(
        "--size",
        choices=SIZES,
        default="small",
        help="small: CPU widths, real geometry (default); 2b: real towers + a 1.5B LLM, CPU, ~30 min for "
        "--cases images --repeats 1; full: real towers + an 8B-class LLM, GPU, bf16",
    )
    p.add_argument(
        "--models",
        type=model_list,
        default=None,
        metavar="M1,M2",
        help=f"comma-separated from {', '.join(MODEL_NAMES)} (default: all but {', '.join(VARIANTS)})",
    )
    p.add_argument("--cases", choices=CASE_SETS, default="all", help="images, videos or all (default)")
    p.add_argument(
        "--repeats", type=positive_int, default=3, metavar="N", help="timed runs after a warm-up (default 3)"
    )
    p.add_argument("--decode-tokens", type=positive_int, default=16, metavar="N", help="tokens timed for decode")
    p.add_argument(
        "--max-frames", type=positive_int, default=None, metavar="N", help="skip longer videos (default: 64, full: 256)"
    )
    p.add_argument(
        "--frames", type=frame_list, default=None, metavar="N1,N2", help="run videos of exactly these frame counts"
    )
    p.add_argument(
        "--images",
        type=image_list,
        default=None,
        metavar="WxH,...",
        help="run images of exactly these sizes (default: 448x448, 896x896, 1344x896, 1920x1080)",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: float32, full: bfloat16)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("docs/performance/small.md"),
        help="markdown report; plots go into a folder of its name beside it (default: docs/performance/small.md)",
    )
    p.add_argument(
        "--note", action="append", default=[], metavar="TEXT", help="a line for the report's setup, e.g. other load"
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also save the raw results as JSON")
    p.add_argument("--from-json", type=Path, default=None, metavar="PATH", help="only re-render a saved run")
    p.add_argument(
        "--merge",
        type=Path,
        default=None,
        metavar="PATH",
        help="add this run's cases to the saved run PATH (same settings; replaces the same model and case), "
        "write it back and report the whole",
    )


def _command_line(args: argparse.Namespace, models: list[str], max_frames: int) -> str:
    parts = ["nvila bench", f"--size {args.size}", f"--cases {args.cases}", f"--models {','.join(models)}"]
    parts += [f"--repeats {args.repeats}", f"--decode-tokens {args.decode_tokens}"]
    parts.append(f"--frames {','.join(map(str, args.frames))}" if args.frames else f"--max-frames {max_frames}")
    if args.images:
        parts.append(f"--images {','.join(f'{w}x{h}' for w, h in args.images)}")
    if args.threads:
        parts.append(f"--threads {args.threads}")
    if args.merge:
        parts.append(f"--merge {args.merge}")
    return " ".join([*parts, f"--out {args.out}"])


def run_bench(args: argparse.Namespace) -> int:
    """Measure the models on the cases, write the report and plots, print the ratios against Qwen2-VL."""
    import torch

    from nvila.atomic import atomic_write_text
    from nvila.bench.peers import default_models
    from nvila.bench.report import peak_table, summary_text, write_report
    from nvila.bench.runner import cases_for, check_mergeable, machine_info, merge_results, run_bench_cases
    from nvila.checkpoint import resolve_device, resolve_dtype

    if args.from_json is not None:
        result = _load(args.from_json)
        written = write_report(result, args.out, result.settings.get("command", ""))
        print("\n".join(f"wrote {path}" for path in written))
        return 0
    models = args.models or default_models()
    device = resolve_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = resolve_dtype(args.dtype or ("bfloat16" if args.size == "full" else "float32"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.size == "full" and device.type == "cpu":
        log.warning("--size full builds 8B-class models; on a CPU this takes hours and tens of GB per model")
    max_frames = args.max_frames or (256 if args.size == "full" else 64)
    if args.frames and args.cases == "images":
        raise ConfigError("--frames chooses video lengths; use it with --cases videos or all")
    if args.images and args.cases == "videos":
        raise ConfigError("--images chooses image sizes; use it with --cases images or all")
    base = None
    if args.merge is not None:  # an unreadable or unmergeable run fails before measuring
        base = _load(args.merge)
        planned = {"size": args.size, "dtype": str(dtype).removeprefix("torch."), "decode_tokens": args.decode_tokens}
        check_mergeable(base, planned, machine_info(device))
    cases, notes = cases_for(args.cases, max_frames, args.frames, args.images)
    command = _command_line(args, models, max_frames)
    result = run_bench_cases(
        models,
        cases,
        size=args.size,
        device=device,
        dtype=dtype,
        repeats=args.repeats,
        decode_tokens=args.decode_tokens,
        seed=args.seed,
        notes=[*notes, *args.note],
    )
    result.settings["command"] = command
    print(summary_text(result))  # this run's cases only
    if base is not None:
        result = merge_results(base, result)
        atomic_write_text(args.merge, result.to_json())
    if args.json is not None:
        atomic_write_text(args.json, result.to_json())
    written = write_report(result, args.out, result.settings["command"])
    peak = peak_table(result)  # only on a GPU of the peak table
    if peak:
        print("\n".join(peak))
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def _load(path: Path):
    """A saved `BenchResult`, or a `ConfigError` saying why it cannot be read."""
    from nvila.bench.runner import BenchResult

    try:
        return BenchResult.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read bench results from {path}: {e}") from None
