"""The GPU acceptance run: every CUDA path of nvila executed and measured once, in one command, on one
H100/H200-class GPU, inside a time budget (default 7 min 30 s), with random weights at real sizes.

    python scripts/gpu_acceptance.py --out docs/performance/gpu-acceptance            # on the GPU machine
    python scripts/gpu_acceptance.py --wheels .whl --out docs/performance/gpu-acceptance   # + carried wheels
    python scripts/gpu_acceptance.py --dry-run --out /tmp/acceptance                   # CPU, tiny sizes (tests)

Parts, in order (each one or more subprocesses with a time limit; the project's own benchmarks do the measuring):
- transformers: `benchmarks/device_map_check.py` on a tiny random checkpoint: `AutoModelForImageTextToText` with the
  tower on the GPU and the LLM on the CPU (accelerate's dispatch), eager attention, and flash-attention where
  installed, each against the model on one device (the same greedy tokens).
- bench: `nvila bench --size full --cases images`: bf16 time to first token and decode tokens/s of NVILA-Lite,
  NVILA, Qwen2-VL and InternVL with one shared Qwen2.5-7B-sized LLM, and decode as a fraction of the card's HBM
  roofline (the report looks the bandwidth up from the device name).
- engine: `benchmarks/engine_vs_transformers.py` at nvila-lite-2b, bf16: 16 concurrent requests vs one at a time,
  without and with `--compile`.
- quant: a random nvila-lite-2b saved, `nvila quantize` (W8A8 tower + W4A16 AWQ LLM; its drift against the float
  model is in quantization.json), then `benchmarks/quant_speed.py`: W4A16 / W8A8 layers and the quantized model's
  decode against float.
- fp8: `benchmarks/fp8_step.py` at nvila-lite-2b: one FP8 training step against bf16 (torchao), with and without
  activation checkpointing, and the loss difference. Needs torchao.
- qlora: `benchmarks/finetune_memory.py --size 2b`: peak memory of a QLoRA step against LoRA over a bf16 base
  and full fine-tuning. Needs bitsandbytes.
A part whose package is missing, or that fails or runs out of time, is reported (skipped / failed, with the reason
and its output's tail) and the rest goes on; a part that would start with less than a minute of the budget left is
skipped. Writes `<out>/acceptance.json` (every part's status, seconds, the JSON its benchmark wrote, its output's
tail) and `<out>/acceptance.md`. `--dry-run` runs the same parts on the CPU at tiny sizes, so the command is known
to start, measure and report before a GPU arrives (tests/scripts/test_gpu_acceptance.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
NVILA = [PYTHON, "-m", "nvila.cli"]
TAIL_LINES = 40


@dataclass
class Step:
    argv: list[str]
    json_out: Path | None = None  #: the file the benchmark writes its numbers to


@dataclass
class Part:
    name: str
    what: str
    steps: Callable[[bool, Path], list[Step]]  #: (dry run, work folder) -> the commands, in order
    needs: tuple[str, ...] = ()  #: Python modules that must import (missing: the part is skipped)
    timeout_s: int = 150


@dataclass
class PartResult:
    name: str
    what: str
    status: str = "not run"  #: ok, skipped, failed
    reason: str = ""
    seconds: float = 0.0
    results: dict[str, object] = field(default_factory=dict)  #: json file name -> what the benchmark wrote
    output_tail: str = ""


def random_checkpoint(preset: str, folder: Path) -> list[str]:
    """A command saving a random-weight `preset` model in the official layout at `folder`."""
    code = "import sys, nvila; m, p = nvila.random_pretrained(sys.argv[1]); nvila.save(m, p.tokenizer, sys.argv[2])"
    return [PYTHON, "-c", code, preset, str(folder)]


def bench_steps(dry: bool, work: Path) -> list[Step]:
    out = work / "bench.json"
    if dry:
        sizes = ["--size", "tiny", "--models", "nvila-lite,qwen2-vl", "--device", "cpu", "--decode-tokens", "2"]
    else:
        models = "nvila-lite,nvila,qwen2-vl,internvl"
        sizes = [
            "--size",
            "full",
            "--models",
            models,
            "--device",
            "cuda",
            "--dtype",
            "bfloat16",
            "--decode-tokens",
            "32",
        ]
    argv = [*NVILA, "bench", *sizes, "--cases", "images", "--repeats", "1" if dry else "2"]
    return [Step([*argv, "--out", str(work / "bench.md"), "--json", str(out)], out)]


def engine_steps(dry: bool, work: Path) -> list[Step]:
    if dry:
        base = ["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--concurrency", "1,2", "--tokens", "4"]
    else:
        base = ["--preset", "nvila-lite-2b", "--device", "cuda", "--dtype", "bfloat16", "--concurrency", "1,16"]
        base += ["--tokens", "64"]
    script = [PYTHON, str(ROOT / "benchmarks" / "engine_vs_transformers.py"), *base, "--repeats", "1", "--no-batched"]
    eager, compiled = work / "engine.json", work / "engine-compile.json"
    steps = [Step([*script, "--json", str(eager)], eager)]
    if not dry:  # compiling the decode step is a CUDA path
        steps.append(Step([*script, "--compile", "--json", str(compiled)], compiled))
    return steps


def quant_steps(dry: bool, work: Path) -> list[Step]:
    float_model, quantized, speed = work / "float", work / "quantized", work / "quant_speed.json"
    device = "cpu" if dry else "cuda"
    quantize = [*NVILA, "quantize", "--model", str(float_model), "--out", str(quantized), "--device", device]
    quantize += ["--calib-samples", "4" if dry else "16", "--heldout-samples", "2" if dry else "8", "--overwrite"]
    if dry:
        quantize += ["--group-size", "32"]  # the tiny LLM is 32 wide
    measure = [PYTHON, str(ROOT / "benchmarks" / "quant_speed.py"), "--quantized", str(quantized)]
    measure += ["--model", str(float_model), "--device", device, "--tokens", "4" if dry else "32"]
    measure += ["--repeats", "1" if dry else "3", "--json", str(speed)] + (["--skip-layers"] if dry else [])
    return [
        Step(random_checkpoint("tiny-lite" if dry else "nvila-lite-2b", float_model)),
        Step(quantize, quantized / "quantization.json"),
        Step(measure, speed),
    ]


def fp8_steps(dry: bool, work: Path) -> list[Step]:
    out = work / "fp8.json"
    argv = [PYTHON, str(ROOT / "benchmarks" / "fp8_step.py"), "--json", str(out)]
    argv += ["--emulate", "--warmup", "0", "--steps", "1"] if dry else ["--preset", "nvila-lite-2b", "--steps", "5"]
    return [Step(argv, out)]


def qlora_steps(dry: bool, work: Path) -> list[Step]:
    argv = [PYTHON, str(ROOT / "benchmarks" / "finetune_memory.py"), "--dir", str(work / "finetune")]
    if dry:
        argv += ["--size", "small", "--cases", "full,lora", "--tokens", "64"]
    else:
        argv += ["--size", "2b", "--device", "cuda", "--cases", "full,ln+lora/bf16,qlora"]
    return [Step(argv)]


def transformers_steps(dry: bool, work: Path) -> list[Step]:
    folder, out = work / "tiny", work / "device_map.json"
    devices = "cpu,cpu" if dry else "cuda:0,cpu"
    check = [PYTHON, str(ROOT / "benchmarks" / "device_map_check.py"), "--model", str(folder), "--devices", devices]
    return [Step(random_checkpoint("tiny", folder)), Step([*check, "--json", str(out)], out)]


PARTS = [
    Part("transformers", "AutoModel: device_map split over GPU and CPU, eager / flash attention", transformers_steps),
    Part("bench", "bf16 TTFT and decode, NVILA / NVILA-Lite vs Qwen2-VL / InternVL, HBM roofline", bench_steps),
    Part("engine", "engine: 16 concurrent vs one at a time, eager and --compile (nvila-lite-2b)", engine_steps),
    Part("quant", "W8A8 tower + W4A16 LLM: drift and decode against float (nvila-lite-2b)", quant_steps),
    Part("fp8", "one FP8 training step vs bf16, with and without activation checkpointing", fp8_steps, ("torchao",)),
    Part(
        "qlora", "peak memory of a QLoRA step vs LoRA (bf16 base) vs full fine-tuning", qlora_steps, ("bitsandbytes",)
    ),
]


def missing_modules(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def run_part(part: Part, dry: bool, work: Path, seconds_left: float, env: dict[str, str]) -> PartResult:
    """Run a part's steps in order; the first failure or timeout ends the part."""
    result = PartResult(part.name, part.what)
    missing = [] if dry else missing_modules(part.needs)  # the dry run's parts do not use them
    if missing:
        result.status, result.reason = "skipped", f"{', '.join(missing)} not installed (bring wheels: --wheels)"
        return result
    if seconds_left < 60:
        result.status, result.reason = "skipped", f"the time budget was spent ({seconds_left:.0f} s left)"
        return result
    folder = work / part.name
    folder.mkdir(parents=True, exist_ok=True)
    started, output = time.monotonic(), []
    limit = min(part.timeout_s, seconds_left)
    result.status = "ok"
    for step in part.steps(dry, folder):
        remaining = limit - (time.monotonic() - started)
        try:
            done = subprocess.run(
                step.argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(remaining, 1)
            )
        except subprocess.TimeoutExpired as e:
            output.append(e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or "")
            result.status, result.reason = "failed", f"over its {limit:.0f} s limit"
            break
        output += [done.stdout, done.stderr]
        if done.returncode != 0:
            result.status, result.reason = "failed", f"{Path(step.argv[1]).name} exited {done.returncode}"
            break
        if step.json_out is not None:
            result.results[step.json_out.name] = json.loads(step.json_out.read_text())
    result.seconds = round(time.monotonic() - started, 1)
    lines = "\n".join(output).replace("\r", "\n").splitlines()
    kept = [line for line in lines if line.strip() and "%|" not in line]  # not the progress bars
    result.output_tail = "\n".join(kept[-TAIL_LINES:])
    return result


def machine() -> dict[str, object]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda}  # fmt: skip


def markdown(report: dict) -> str:
    lines = [f"# GPU acceptance run{' (dry run: CPU, tiny sizes)' if report['dry_run'] else ''}", ""]
    machine_text = ", ".join(f"{k} {v}" for k, v in report["machine"].items() if v is not None)
    lines += [f"Machine: {machine_text}; {report['seconds']:.0f} s of a {report['budget_s']} s budget.", ""]
    lines += ["| part | status | s | what |", "|---|---|---|---|"]
    for part in report["parts"]:
        status = part["status"] + (f": {part['reason']}" if part["reason"] else "")
        lines.append(f"| {part['name']} | {status} | {part['seconds']:.0f} | {part['what']} |")
    for part in report["parts"]:
        if part["output_tail"]:
            lines += ["", f"## {part['name']}", "", "```", part["output_tail"], "```"]
    return "\n".join(lines) + "\n"


def install_wheels(wheels: Path, work: Path, env: dict[str, str]) -> None:
    """pip-install the carried wheels into a folder of their own, first on every part's PYTHONPATH."""
    target = work / "site"
    files = [str(p) for p in sorted(wheels.glob("*.whl"))]
    if files:
        command = [PYTHON, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target), *files]
        subprocess.run(command, check=True)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
        sys.path.insert(0, str(target))  # so missing_modules sees them too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for acceptance.json / .md and the parts' files")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check that every part runs")
    parser.add_argument("--budget", type=int, default=450, help="seconds for all parts (default: 450)")
    parser.add_argument("--parts", default=",".join(p.name for p in PARTS), help="comma-separated subset, in order")
    parser.add_argument("--wheels", type=Path, help="a folder of wheels (torchao, bitsandbytes) to install first")
    args = parser.parse_args(argv)
    wanted = args.parts.split(",")
    unknown = sorted(set(wanted) - {p.name for p in PARTS})
    if unknown:
        parser.error(f"unknown parts {unknown}; known: {', '.join(p.name for p in PARTS)}")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_acceptance: no CUDA device; on a CPU run --dry-run", file=sys.stderr)
        return 1
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    if args.wheels:
        install_wheels(args.wheels, work, env)
    started = time.monotonic()
    results = []
    for part in (p for p in PARTS if p.name in wanted):
        left = args.budget - (time.monotonic() - started)
        result = run_part(part, args.dry_run, work, left, env)
        print(f"{part.name}: {result.status} {result.reason} ({result.seconds:.0f} s)".replace("  ", " "), flush=True)
        results.append(result)
    report = {"dry_run": args.dry_run, "machine": machine(), "budget_s": args.budget,
              "seconds": round(time.monotonic() - started, 1), "parts": [asdict(r) for r in results]}  # fmt: skip
    (work / "acceptance.json").write_text(json.dumps(report, indent=1) + "\n")
    (work / "acceptance.md").write_text(markdown(report))
    print(f"wrote {work / 'acceptance.json'} and {work / 'acceptance.md'}")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
