"""Running a benchmark: batched generation, per-sample scores appended as they come, resume, the summary.

An output folder holds:
    run.json            the settings that produced the predictions (a rerun with other settings is refused)
    predictions.jsonl   one scored sample a line, appended batch by batch; a rerun skips the ids already there
    summary.json        scores overall, per sub-task (and per template), no-answer counts, baselines, settings
    report.md, scores.png

Owns: the loop, the files above and the aggregation. Does not own reading benchmarks (`loaders`), prompts and
scorers (`benchmarks`), or the report's text and plots (`report`). The model is reached through a `Generate`
function, so tests (and other backends) can stand in for `NVILAPipeline`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nvila.argtypes import check_frame_sampling
from nvila.atomic import atomic_write_text
from nvila.errors import ConfigError
from nvila.eval.benchmarks import Benchmark, get_benchmark
from nvila.eval.loaders import EvalSample
from nvila.eval.metrics import localization_metrics
from nvila.json_io import read_json

log = logging.getLogger(__name__)

PREDICTIONS, SUMMARY, RUN = "predictions.jsonl", "summary.json", "run.json"
#: Settings recorded in run.json that change predictions, with the value a run.json written before they were
#: recorded stands for.
RUN_KEYS = {
    "benchmark": None,
    "model": None,
    "data": None,
    "max_new_tokens": None,
    "prompt": None,
    "video_timestamps": False,
    "frame_sampling": "centres",
    "model_files": None,
}
#: Keys a run.json written before they were recorded lacks; they are then not compared.
UNRECORDED_OK = {"model_files"}

#: (prompts, images per prompt, videos per prompt) -> one output text per prompt
Generate = Callable[[list[str], list[list[Any]], list[list[Any]]], list[str]]


@dataclass
class EvalSettings:
    """What `nvila eval` was asked to do."""

    benchmark: str
    data: str
    out: str
    model: str
    limit: int | None = None  #: the first N samples only
    batch_size: int = 8
    max_new_tokens: int | None = None  #: None: the benchmark's default
    device: str = "cpu"
    dtype: str = "float32"
    video_timestamps: bool = False  #: frame times written before each video (temporal localization)
    frame_sampling: str = "centres"  #: how video frames are chosen: "centres" or "linspace" (`video_io`)

    def __post_init__(self) -> None:
        check_frame_sampling(self.frame_sampling, "--frame-sampling")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


# ---- the model ------------------------------------------------------------------------------------------------
def pipeline_generator(
    pipe: Any, max_new_tokens: int, *, video_timestamps: bool = False, frame_sampling: str = "centres"
) -> Generate:
    """A `Generate` on an `NVILAPipeline`: greedy decoding of at most `max_new_tokens` tokens, videos (paths)
    sampled with `frame_sampling` and, with `video_timestamps`, their frame times in the prompt. `pipe` itself
    is left as it is (a copy of its processor carries the video options)."""
    from nvila.generation import GenerationOptions
    from nvila.pipeline import NVILAPipeline

    processor = copy.copy(pipe.processor)
    processor.video_timestamps, processor.video_sampling = video_timestamps, frame_sampling
    pipe = NVILAPipeline(pipe.model, processor)
    options = GenerationOptions(max_new_tokens=max_new_tokens)
    return lambda prompts, images, videos: pipe.generate_batch(prompts, images, options, videos=videos)


def load_pipeline_generator(settings: EvalSettings, max_new_tokens: int) -> Generate:
    """Load the checkpoint at `settings.model` and wrap it as a `Generate` with the settings' video options."""
    from nvila.pipeline import NVILAPipeline

    pipe = NVILAPipeline.from_pretrained(settings.model, device=settings.device, dtype=settings.dtype)
    return pipeline_generator(
        pipe, max_new_tokens, video_timestamps=settings.video_timestamps, frame_sampling=settings.frame_sampling
    )


# ---- files --------------------------------------------------------------------------------------------------
def read_predictions(path: Path) -> dict[str, dict]:
    """id -> scored record of a predictions.jsonl; a last line cut short by an interrupted run is dropped."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        log.warning("%s: dropping an incomplete last line (an interrupted run); its sample will be rerun", path)
        with open(path, "r+b") as f:
            f.truncate(keep)
        raw = raw[:keep]
    records = {}
    for n, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
                records[str(record["id"])] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(f"{path}: line {n} is not a prediction record; delete it to rerun") from None
    return records


def _check_run(out: Path, run: dict) -> None:
    """Refuse to mix predictions of different settings in one folder; then record these settings."""
    path = out / RUN
    if path.exists():
        recorded = read_json(path, ConfigError, want=dict)
        old = {k: recorded.get(k, default) for k, default in RUN_KEYS.items()}
        changed = [k for k in RUN_KEYS if old[k] != run[k] and (k in recorded or k not in UNRECORDED_OK)]
        if changed:
            raise ConfigError(
                f"{out} holds predictions made with another {', '.join(changed)} "
                f"({', '.join(f'{k}={old[k]!r}' for k in changed)}); use another --out or delete it"
            )
    atomic_write_text(path, json.dumps(run, indent=2) + "\n")


def model_files(model: str | os.PathLike) -> str | None:
    """A fingerprint of a checkpoint folder's files (relative path, size, modification time), so that weights
    rewritten in place (a retrained model) do not resume the old model's predictions; None for a non-folder."""
    root = Path(model)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()[:16]


def _media_labels(items: list[Any]) -> list[str]:
    return [os.fspath(x) if isinstance(x, (str, os.PathLike)) else "<inline bytes>" for x in items]


# ---- the loop -----------------------------------------------------------------------------------------------
def score_record(benchmark: Benchmark, sample: EvalSample, prompt: str, output: str) -> dict:
    """The predictions.jsonl line of one sample."""
    score = benchmark.score(output, sample)
    record = {
        "id": sample.id,
        "task": sample.task,
        "prompt": prompt,
        "images": _media_labels(sample.images),
        "videos": _media_labels(sample.videos),
        "answers": sample.answers,
        "output": output,
        "answer": score.answer,
        "score": score.value,
        "no_answer": score.answer is None,
    }
    if "template" in sample.meta:
        record["template"] = sample.meta["template"]
    if score.gold_interval is not None:
        record["interval"] = list(score.interval) if score.interval else None
        record["gold_interval"] = list(score.gold_interval)
    return record


def run_benchmark(
    settings: EvalSettings,
    load_generate: Callable[[EvalSettings, int], Generate] = load_pipeline_generator,
    progress: bool | None = None,
) -> dict:
    """Evaluate, resuming from the output folder; returns the summary (also written with the report).

    `load_generate(settings, max_new_tokens)` is called only when some sample still needs an answer.
    """
    from nvila.eval.report import write_report

    benchmark = get_benchmark(settings.benchmark)
    samples = benchmark.load(Path(settings.data))
    if not samples:
        raise ConfigError(f"{benchmark.name}: {settings.data} holds no samples")
    has_video = any(s.videos for s in samples)  # over the whole benchmark: raising --limit keeps the run's identity
    samples = samples[: settings.limit] if settings.limit else samples
    max_new_tokens = settings.max_new_tokens or benchmark.max_new_tokens
    if not has_video and (settings.video_timestamps or settings.frame_sampling != "centres"):
        log.warning("%s: no sample has a video; --video-timestamps / --frame-sampling change nothing", benchmark.name)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = benchmark.describe_data(Path(settings.data)) if benchmark.describe_data else {}
    run = {
        "benchmark": benchmark.name,
        "model": str(settings.model),
        # ids repeat across data sets (e.g. two synth seeds): the data's identity, else its place
        "data": dataset.get("content_hash") or str(Path(settings.data).resolve()),
        "max_new_tokens": max_new_tokens,
        "prompt": benchmark.prompt,
        # without videos these change nothing: recorded as the defaults, so they never block a resume
        "video_timestamps": settings.video_timestamps and has_video,
        "frame_sampling": settings.frame_sampling if has_video else "centres",
        "model_files": model_files(settings.model),
    }
    _check_run(out, run)
    done = read_predictions(out / PREDICTIONS)
    todo = [s for s in samples if s.id not in done]
    if todo:
        generate = load_generate(settings, max_new_tokens)
        done.update(_answer(benchmark, todo, generate, out / PREDICTIONS, settings.batch_size, len(samples), progress))
    records = [done[s.id] for s in samples]
    summary = summarize(benchmark, samples, records, settings, max_new_tokens, dataset)
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    write_report(summary, out)
    return summary


def _answer(
    benchmark: Benchmark,
    todo: list[EvalSample],
    generate: Generate,
    path: Path,
    batch_size: int,
    total: int,
    progress: bool | None,
) -> dict[str, dict]:
    """Generate, score and append `todo` batch by batch; returns id -> record of the new predictions."""
    new: dict[str, dict] = {}
    bar = tqdm(
        total=total,
        initial=total - len(todo),
        unit="q",
        desc=f"nvila eval {benchmark.name}",
        disable=None if progress is None else not progress,
    )
    with bar, open(path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            prompts = [benchmark.format_prompt(s) for s in batch]
            outputs = generate(prompts, [list(s.images) for s in batch], [list(s.videos) for s in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"the model returned {len(outputs)} answers for {len(batch)} prompts")
            for sample, prompt, output in zip(batch, prompts, outputs):
                record = score_record(benchmark, sample, prompt, output)
                f.write(json.dumps(record) + "\n")
                new[sample.id] = record
            f.flush()
            bar.update(len(batch))
    return new


# ---- the summary ----------------------------------------------------------------------------------------------
def _scores(records: list[dict]) -> dict:
    return {
        "score": statistics.fmean(r["score"] for r in records),
        "count": len(records),
        "no_answer": sum(bool(r["no_answer"]) for r in records),
    }


def _grouped(records: list[dict], key: str) -> dict[str, dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r.get(key) or ""].append(r)
    return {name: _scores(group) for name, group in sorted(groups.items())}


def summarize(
    benchmark: Benchmark,
    samples: list[EvalSample],
    records: list[dict],
    settings: EvalSettings,
    max_new_tokens: int,
    dataset: dict,
) -> dict:
    """Scores overall (mean over samples), per sub-task (and their mean), per template, localization metrics,
    the benchmark's baseline, the model and the settings."""
    tasks = _grouped(records, "task") if any(r["task"] for r in records) else {}
    summary: dict[str, Any] = {
        "benchmark": benchmark.name,
        "description": benchmark.description,
        "metric": benchmark.metric,
        **_scores(records),
        "macro_score": statistics.fmean(t["score"] for t in tasks.values()) if tasks else None,
        "tasks": tasks,
    }
    if any("template" in r for r in records):
        summary["templates"] = _grouped(records, "template")
    located = [r for r in records if "gold_interval" in r]
    if located:
        preds = [tuple(r["interval"]) if r["interval"] else None for r in located]
        summary["localization"] = {
            **localization_metrics(preds, [tuple(r["gold_interval"]) for r in located]),
            "count": len(located),
        }
    if benchmark.baseline is not None:
        baseline = benchmark.baseline(Path(settings.data), samples)
        counted = {name: t["count"] for name, t in tasks.items() if name in baseline}
        if counted:  # over all evaluated samples, each task weighted by its sample count
            baseline["all"] = sum(baseline[n] * c for n, c in counted.items()) / sum(counted.values())
        summary["majority_baseline"] = baseline
    summary.update(
        model=str(settings.model),
        data=str(settings.data),
        dataset=dataset,
        settings={**asdict(settings), "max_new_tokens": max_new_tokens, "prompt": benchmark.prompt},
        versions=_versions(),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return summary


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("nvila", "torch", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
