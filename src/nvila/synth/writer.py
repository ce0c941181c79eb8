"""Writing a synthetic dataset to disk, the `nvila synth` command, and the majority-answer baseline.

A dataset root holds:
    train.jsonl, heldout.jsonl     LLaVA-style records, one JSON object a line, media paths relative to the root
    images/<task>/<stem>.png       (several images: <stem>_0.png, <stem>_1.png, ...)
    videos/<task>/<stem>.mp4
    manifest.json                  options, counts, library versions, content hash, majority baselines

Record: {"id", "source", "image" (a path or a list) | "video", "conversations": [{"from": "human" | "gpt",
"value"}...], "meta": {"template", "templates", "scene", ...}}. The first human turn starts with one
`<image>` line per image (or `<vila/video>`); "templates" has one template id per answer and "template" is
the first of them; event records add "events", "duration" and "fps" to "meta".

Determinism: record i of a split of a task is drawn from a Generator seeded with (seed, crc32(task), split, i,
attempt), so the same options give byte-identical files (with the same numpy, Pillow and PyAV), and the
held-out records do not depend on how many train records are asked for. Held-out and train media are disjoint
by content: a train sample whose pixels equal a held-out sample's is drawn again (attempt + 1).
The dataset is written to a hidden sibling folder, then renamed into place, so an interrupted run leaves no
half dataset. Owns no drawing (see the task modules).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np
import PIL
from tqdm import tqdm

from nvila.atomic import publish, temporary_folder
from nvila.errors import ConfigError
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN
from nvila.synth import Sample, Turn, charts, documents, shapes
from nvila.synth.charts import make_chart
from nvila.synth.documents import make_document
from nvila.synth.shapes import make_shapes
from nvila.synth.videos import encode_mp4, make_events

FORMAT = "nvila-synth/1"
SPLITS = ("train", "heldout")
#: Smallest and largest image / video side accepted (px).
MIN_SIDE, MAX_SIDE = 64, 4096
#: Videos are at most this large by default (small models sample many frames).
DEFAULT_MAX_VIDEO_SIDE = 96
#: Redraws of a train sample that repeats a held-out one before giving up (one redraw is all it ever takes).
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class Task:
    """A sub-dataset: its generator, whether it makes videos, and its record count when none is given."""

    make: Callable[[np.random.Generator, tuple[int, int], int], Sample]  #: (rng, size, max_questions)
    video: bool
    default_count: int
    #: The task's caption turn (scene -> Turn) for datasets written with captions; None: the task has none.
    describe: Callable[[dict], Turn] | None = None
    #: `make` takes `max_lines` (the plan's page_lines: at most that many lines of text per image)
    takes_page_lines: bool = False


#: The tasks, in the order they are written.
TASKS: dict[str, Task] = {
    "documents": Task(
        make_document, video=False, default_count=1000, describe=documents.describe, takes_page_lines=True
    ),
    "charts": Task(make_chart, video=False, default_count=500, describe=charts.describe),
    "shapes": Task(make_shapes, video=False, default_count=1000, describe=shapes.describe),
    "events": Task(make_events, video=True, default_count=200),
}


@dataclass(frozen=True)
class Plan:
    """Validated options of one dataset."""

    counts: dict[str, tuple[int, int]]  #: task -> (train, heldout), in TASKS order
    seed: int
    image_size: tuple[int, int]
    video_size: tuple[int, int]
    max_questions: int
    heldout: float | dict[str, int]  #: as asked, for the manifest
    captions: bool = False  #: end every image record with its task's caption turn
    page_lines: int | None = None  #: at most this many body lines on a document page (None: as many as fit)


# ---- options ----------------------------------------------------------------------------------------------
def make_plan(
    tasks: Mapping[str, int] | Sequence[str] | None,
    seed: int = 0,
    image_size: int | tuple[int, int] = 448,
    heldout: float | Mapping[str, int] = 0.1,
    video_size: int | tuple[int, int] | None = None,
    max_questions: int = 3,
    captions: bool = False,
    page_lines: int | None = None,
) -> Plan:
    """Check the options of `write_dataset`; raise `ConfigError` naming the bad one."""
    totals = _task_counts(tasks)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(max_questions, bool) or not isinstance(max_questions, int) or max_questions < 1:
        raise ConfigError(f"max questions must be an integer >= 1, got {max_questions!r}")
    if page_lines is not None and (isinstance(page_lines, bool) or not isinstance(page_lines, int) or page_lines < 1):
        raise ConfigError(f"page lines must be an integer >= 1, got {page_lines!r}")
    image = _size(image_size, "image size")
    if video_size is None:  # the image size, capped and made even
        video_size = tuple(min(s, DEFAULT_MAX_VIDEO_SIDE) // 2 * 2 for s in image)
    video = _size(video_size, "video size")
    if video[0] % 2 or video[1] % 2:
        raise ConfigError(f"video size must be even (4:2:0 video), got {video[0]}x{video[1]}")
    held = _heldout_counts(totals, heldout)
    counts = {name: (totals[name] - held[name], held[name]) for name in TASKS if name in totals}
    heldout_option = dict(heldout) if isinstance(heldout, Mapping) else float(heldout)
    return Plan(counts, seed, image, video, max_questions, heldout_option, bool(captions), page_lines)


def _task_counts(tasks: Mapping[str, int] | Sequence[str] | None) -> dict[str, int]:
    if tasks is None:
        tasks = list(TASKS)
    if isinstance(tasks, str) or not isinstance(tasks, Mapping | Sequence):
        raise ConfigError(f"tasks must be a mapping name -> count or a list of names, got {tasks!r}")
    if not isinstance(tasks, Mapping):
        if len(set(tasks)) != len(tasks):
            raise ConfigError(f"a task is named twice in {list(tasks)}")
        tasks = {name: TASKS[name].default_count if name in TASKS else 0 for name in tasks}
    for name, count in tasks.items():
        if name not in TASKS:
            raise ConfigError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ConfigError(f"the count of task {name!r} must be an integer >= 0, got {count!r}")
    if sum(tasks.values()) == 0:
        raise ConfigError("nothing to generate: every task count is 0")
    return {name: int(count) for name, count in tasks.items()}


def _heldout_counts(totals: dict[str, int], heldout: float | Mapping[str, int]) -> dict[str, int]:
    """Held-out records per task, taken out of the task's total."""
    if isinstance(heldout, Mapping):
        for name, k in heldout.items():
            if name not in totals:
                raise ConfigError(f"held-out count for {name!r}, which is not among the tasks ({', '.join(totals)})")
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= totals[name]:
                raise ConfigError(f"held-out count of {name!r} must be an integer in [0, {totals[name]}], got {k!r}")
        return {name: int(heldout.get(name, 0)) for name in totals}
    if isinstance(heldout, bool) or not isinstance(heldout, int | float) or not 0 <= heldout < 1:
        raise ConfigError(f"held-out fraction must be in [0, 1), got {heldout!r}")
    return {name: math.floor(n * heldout + 0.5) for name, n in totals.items()}  # round half up


def _size(value: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        size: tuple = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        size = tuple(value)
    else:
        raise ConfigError(f"{what} must be N or (width, height), got {value!r}")
    if len(size) != 2 or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in size):
        raise ConfigError(f"{what} must be N or (width, height), got {value!r}")
    if not all(MIN_SIDE <= s <= MAX_SIDE for s in size):
        raise ConfigError(f"{what} sides must be in [{MIN_SIDE}, {MAX_SIDE}] px, got {size[0]}x{size[1]}")
    return int(size[0]), int(size[1])


# ---- samples -> records ------------------------------------------------------------------------------------
def draw_sample(
    plan: Plan, task: str, split: str, index: int, avoid: AbstractSet[bytes] | None = None
) -> tuple[Sample, bytes]:
    """The sample of `index` in `split` of `task`, and its media digest; redrawn while the digest is in `avoid`."""
    spec = TASKS[task]
    size = plan.video_size if spec.video else plan.image_size
    for attempt in range(MAX_ATTEMPTS):
        # Fixed-length entropy: numpy's SeedSequence gives [a, b] and [a, b, 0] the same state.
        rng = np.random.default_rng([plan.seed, zlib.crc32(task.encode()), SPLITS.index(split), index, attempt])
        options = (plan.page_lines,) if spec.takes_page_lines else ()  # None: the task's own default
        sample = spec.make(rng, size, plan.max_questions, *options)
        if plan.captions and spec.describe is not None:  # derived from the scene: draws nothing from rng
            sample.turns.append(spec.describe(sample.scene))
        digest = media_digest(sample)
        if avoid is None or digest not in avoid:
            return sample, digest
    raise RuntimeError(f"{task} {split} {index}: {MAX_ATTEMPTS} draws all repeated held-out media")


def media_digest(sample: Sample) -> bytes:
    """SHA-256 of the sample's pixels (images in order, or all frames)."""
    h = hashlib.sha256()
    if sample.frames is not None:
        h.update(repr(sample.frames.shape).encode())
        h.update(np.ascontiguousarray(sample.frames).tobytes())
    for image in sample.images:
        h.update(repr(image.size).encode())
        h.update(image.tobytes())
    return h.digest()


def to_record(sample: Sample, task: str, record_id: str, media: list[str]) -> dict:
    """The JSONL record of a sample whose media were saved at `media` (paths relative to the root)."""
    video = sample.frames is not None
    prefix = VIDEO_TOKEN if video else "\n".join([IMAGE_TOKEN] * len(media))
    conversations = []
    for i, turn in enumerate(sample.turns):
        question = f"{prefix}\n{turn.question}" if i == 0 else turn.question
        conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": turn.answer}]
    record: dict = {"id": record_id, "source": task}
    if video:
        record["video"] = media[0]
    else:
        record["image"] = media[0] if len(media) == 1 else media
    templates = [turn.template for turn in sample.turns]
    record["conversations"] = conversations
    record["meta"] = {"template": templates[0], "templates": templates, **sample.meta, "scene": sample.scene}
    return record


def _save_media(root: Path, task: str, stem: str, sample: Sample) -> list[str]:
    if sample.frames is not None:
        paths = [f"videos/{task}/{stem}.mp4"]
        encode_mp4(root / paths[0], sample.frames, sample.fps)
        return paths
    if len(sample.images) == 1:
        paths = [f"images/{task}/{stem}.png"]
    else:
        paths = [f"images/{task}/{stem}_{j}.png" for j in range(len(sample.images))]
    for path, image in zip(paths, sample.images):
        image.save(root / path, format="PNG")
    return paths


def _write_records(root: Path, plan: Plan, progress: bool | None, workers: int) -> None:
    """All held-out records, then all train records (which avoid the held-out media), in TASKS order."""
    for task in plan.counts:
        (root / ("videos" if TASKS[task].video else "images") / task).mkdir(parents=True, exist_ok=True)
    total = sum(sum(c) for c in plan.counts.values())
    heldout_media: set[bytes] = set()
    with tqdm(total=total, unit="rec", desc="nvila synth", disable=None if progress is None else not progress) as bar:
        for split in ("heldout", "train"):
            column = SPLITS.index(split)
            jobs = [(plan, root, task, split, i) for task, c in plan.counts.items() for i in range(c[column])]
            avoid = frozenset(heldout_media) if split == "train" else None
            with (
                open(root / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as file,
                closing(_run(jobs, avoid, workers)) as results,  # on errors: workers stop before the cleanup
            ):
                for record, digest in results:
                    file.write(json.dumps(record) + "\n")
                    if split == "heldout":
                        heldout_media.add(digest)
                    bar.set_postfix_str(f"{record['source']} {split}", refresh=False)
                    bar.update()


Job = tuple[Plan, Path, str, str, int]  #: (plan, root, task, split, index)


def _build(job: Job, avoid: frozenset[bytes] | None) -> tuple[dict, bytes]:
    """Draw one sample, save its media under the root and return its record and media digest."""
    plan, root, task, split, index = job
    sample, digest = draw_sample(plan, task, split, index, avoid)
    stem = f"{index:06d}" if split == "train" else f"h{index:06d}"
    return to_record(sample, task, f"{task}-{stem}", _save_media(root, task, stem, sample)), digest


def _run(jobs: list[Job], avoid: frozenset[bytes] | None, workers: int) -> Iterator[tuple[dict, bytes]]:
    """`_build` over the jobs, in job order, in this process or in `workers` processes."""
    if workers <= 1 or len(jobs) < 2 * workers:
        for job in jobs:
            yield _build(job, avoid)
        return
    # spawn, not fork: the progress bar's thread is running
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_set_avoid, initargs=(avoid,))
    try:
        yield from pool.map(_build_in_worker, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # an error or Ctrl-C: drop what has not started


_worker_avoid: frozenset[bytes] | None = None  # per worker process, set once by the pool's initializer


def _set_avoid(avoid: frozenset[bytes] | None) -> None:
    global _worker_avoid
    _worker_avoid = avoid


def _build_in_worker(job: Job) -> tuple[dict, bytes]:
    return _build(job, _worker_avoid)


def default_workers(total: int) -> int:
    """Processes for `total` records: 1 for small datasets (starting processes costs ~1 s), else the usable
    CPUs, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if total < 500 else max(1, min(8, cpus))


# ---- the dataset ------------------------------------------------------------------------------------------
def write_dataset(
    root: str | os.PathLike,
    tasks: Mapping[str, int] | Sequence[str] | None = None,
    seed: int = 0,
    image_size: int | tuple[int, int] = 448,
    heldout: float | Mapping[str, int] = 0.1,
    *,
    video_size: int | tuple[int, int] | None = None,
    max_questions: int = 3,
    captions: bool = False,
    page_lines: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
) -> dict:
    """Write a synthetic dataset at `root` and return its manifest.

    tasks: task name -> number of records (train + held out), or a list of names (default counts); None: all.
    heldout: the fraction of each task held out, in [0, 1) (rounded half up), or task name -> held-out count.
    image_size / video_size: N or (width, height); videos default to the image size capped at 96 px.
    max_questions: each record asks 1..max_questions questions about its media.
    captions: end every image record with a caption turn (all shapes with their colours, every bar's value and
        colour, a page's whole text): dense supervision for projector and reading pre-training. Records are
        otherwise the same as without it (the caption is drawn from the scene, not from the random stream).
    page_lines: at most this many body lines on each document page (1..N, so its questions ask about lines
        1..N): simpler pages for a reading curriculum; None (default) draws 2..as many as fit.
    overwrite: replace an existing dataset at `root` (never a folder that is not a dataset and not empty).
    progress: show a progress bar (None: when stderr is a terminal).
    workers: processes drawing samples (None: `default_workers`); the files do not depend on it.
    """
    plan = make_plan(tasks, seed, image_size, heldout, video_size, max_questions, captions, page_lines)
    if workers is None:
        workers = default_workers(sum(sum(c) for c in plan.counts.values()))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    root = Path(root)
    _check_target(root, overwrite)
    tmp = temporary_folder(root.parent, root.name, suffix=".partial")
    try:
        _write_records(tmp, plan, progress, workers)
        manifest = _manifest(tmp, plan)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        publish(tmp)
        _move_into_place(tmp, root, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _check_target(root: Path, overwrite: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise ConfigError(f"{root} exists and is not a folder")
    if not overwrite:
        raise ConfigError(f"{root} already exists; pass --overwrite (overwrite=True) to replace it")
    if any(root.iterdir()) and not (root / "manifest.json").is_file():
        raise ConfigError(f"refusing to overwrite {root}: it is not empty and holds no manifest.json of a dataset")


def _move_into_place(tmp: Path, root: Path, overwrite: bool) -> None:
    if not root.exists():
        tmp.rename(root)
        return
    _check_target(root, overwrite)  # again: it may have appeared while we were writing
    old = tmp.with_suffix(".old")
    root.rename(old)
    tmp.rename(root)
    shutil.rmtree(old)


def content_hash(root: str | os.PathLike) -> str:
    """SHA-256 over every file of a dataset but manifest.json: relative path and file digest, in path order."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def _manifest(root: Path, plan: Plan) -> dict:
    train, heldout = load_jsonl(root / "train.jsonl"), load_jsonl(root / "heldout.jsonl")
    return {
        "format": FORMAT,
        "seed": plan.seed,
        "image_size": list(plan.image_size),
        "video_size": list(plan.video_size),
        "max_questions": plan.max_questions,
        "captions": plan.captions,
        **({"page_lines": plan.page_lines} if plan.page_lines is not None else {}),
        "heldout": plan.heldout,
        "tasks": {name: {"train": n, "heldout": k} for name, (n, k) in plan.counts.items()},
        "records": {"train": len(train), "heldout": len(heldout)},
        "templates": dict(sorted(Counter(t for _, t, _ in _answers(train + heldout)).items())),
        "majority_baseline": {
            "train": majority_baseline(train),
            "heldout": majority_baseline(heldout, fit=train),  # majority answers of train, scored on held out
        },
        "versions": {"numpy": np.__version__, "pillow": PIL.__version__, "av": av.__version__},
        "content_hash": content_hash(root),
    }


def load_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- majority baseline ------------------------------------------------------------------------------------
def _answers(records: Iterable[dict]) -> Iterator[tuple[str, str, str]]:
    """(source, template, answer) of every answer; records without template ids count as one template."""
    for record in records:
        answers = [turn["value"] for turn in record["conversations"] if turn["from"] == "gpt"]
        meta = record.get("meta", {})
        templates = meta.get("templates") or [meta.get("template", "")] * len(answers)
        if len(templates) != len(answers):
            raise ValueError(f"record {record.get('id')}: {len(templates)} templates for {len(answers)} answers")
        for template, answer in zip(templates, answers):
            yield record["source"], template, answer


def majority_baseline(records: Iterable[dict], fit: Iterable[dict] | None = None) -> dict[str, float]:
    """Exact-match accuracy per source of always giving the most common answer of the question's
    (source, template); ties go to the smaller answer string.

    The most common answers are counted on `fit` (e.g. the train split) when given, else on `records`
    themselves; a template that `fit` lacks scores 0. Every answer of a multi-turn record counts once.
    """
    items = list(_answers(records))
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for source, template, answer in items if fit is None else _answers(fit):
        counts[source, template][answer] += 1
    majority = {key: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for key, c in counts.items()}
    hits: Counter = Counter()
    totals: Counter = Counter()
    for source, template, answer in items:
        totals[source] += 1
        hits[source] += majority.get((source, template)) == answer
    return {source: hits[source] / totals[source] for source in sorted(totals)}


# ---- nvila synth ------------------------------------------------------------------------------------------
def add_synth_args(p: argparse.ArgumentParser) -> None:
    """`nvila synth`'s options (its description and examples are `nvila.cli.SYNTH_HELP`)."""
    defaults = ",".join(f"{name}={task.default_count}" for name, task in TASKS.items())
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to create")
    p.add_argument(
        "--tasks",
        metavar="NAME=N,...",
        help=f"records per task, train and held out together; a bare name takes its default (default: {defaults})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default: 0)")
    p.add_argument("--image-size", default="448", metavar="N|WxH", help="image size in px (default: 448)")
    p.add_argument(
        "--video-size",
        metavar="N|WxH",
        help=f"video frame size in px (default: the image size, at most {DEFAULT_MAX_VIDEO_SIDE})",
    )
    p.add_argument(
        "--heldout",
        default="0.1",
        metavar="F|NAME=N,...",
        help="fraction of each task held out, in [0, 1), or held-out counts per task (default: 0.1)",
    )
    p.add_argument("--max-questions", type=int, default=3, metavar="N", help="questions per record: 1..N (default: 3)")
    p.add_argument(
        "--captions",
        action="store_true",
        help="end every image record with a caption turn (shapes and colours, bar values, the page text)",
    )
    p.add_argument(
        "--page-lines",
        type=int,
        metavar="N",
        help="documents: at most N body lines per page, so questions ask about lines 1..N (default: as many as fit)",
    )
    p.add_argument(
        "--workers", type=int, metavar="N", help="processes (default: 1 below 500 records, else the CPUs, at most 8)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")


def run_synth(args: argparse.Namespace) -> int:
    """Write a synthetic dataset and print where, how much, and the majority baselines to beat."""
    tasks = parse_counts(args.tasks, "--tasks", bare_ok=True) if args.tasks else None
    heldout = parse_counts(args.heldout, "--heldout") if "=" in args.heldout else parse_fraction(args.heldout)
    manifest = write_dataset(
        args.out,
        tasks,
        seed=args.seed,
        image_size=parse_size(args.image_size, "--image-size"),
        heldout=heldout,
        video_size=parse_size(args.video_size, "--video-size") if args.video_size else None,
        max_questions=args.max_questions,
        captions=args.captions,
        page_lines=args.page_lines,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    lines = [f"wrote {args.out}: {manifest['records']['train']} train, {manifest['records']['heldout']} held out"]
    for name, c in manifest["tasks"].items():
        base = manifest["majority_baseline"]["heldout"].get(name)
        baseline = f", majority baseline {base:.3f} on held out" if base is not None else ""
        lines.append(f"  {name}: {c['train']} train, {c['heldout']} held out{baseline}")
    lines.append(f"content hash {manifest['content_hash']}")
    print("\n".join(lines))
    return 0


def parse_counts(text: str, option: str, bare_ok: bool = False) -> dict[str, int]:
    """'documents=1000,charts=500' -> {"documents": 1000, "charts": 500} (a bare name: its default count)."""
    counts: dict[str, int] = {}
    for item in (s.strip() for s in text.split(",")):
        match = re.fullmatch(r"([A-Za-z_]+)\s*(?:=\s*([+-]?\d+))?", item)
        if not match or (match.group(2) is None and not bare_ok):
            raise ConfigError(f"{option}: expected NAME=COUNT[,NAME=COUNT...], got {item!r}")
        name = match.group(1)
        if name in counts:
            raise ConfigError(f"{option}: {name!r} is given twice")
        if name not in TASKS:
            raise ConfigError(f"{option}: unknown task {name!r}; choose from {', '.join(TASKS)}")
        counts[name] = int(match.group(2)) if match.group(2) is not None else TASKS[name].default_count
    return counts


def parse_fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--heldout: expected a fraction in [0, 1) or NAME=COUNT,..., got {text!r}") from None


def parse_size(text: str, option: str) -> tuple[int, int]:
    """'448' -> (448, 448); '96x64' -> (96, 64)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match:
        raise ConfigError(f"{option}: expected N or WIDTHxHEIGHT, got {text!r}")
    w = int(match.group(1))
    return w, int(match.group(2)) if match.group(2) else w
