"""Readers of local benchmark copies in their published formats -> `EvalSample` lists.

Owns: finding a benchmark's files under the folder given as `--data`, reading JSON / JSONL / parquet, and
turning records into samples with their media paths checked. A missing file, a record without a needed
field or a missing image raises `ConfigError` naming the file, the record and the field. Nothing here
downloads, prompts a model or scores: prompts and metrics are in `benchmarks`.

Formats (as published; the file names tried are in each loader's docstring):
    DocVQA          val_v1.0.json             {"data": [{"questionId", "question", "image", "answers"}]}
    InfographicVQA  infographicsVQA_val_v1.0_withQT.json   as DocVQA, image in "image_local_name"
    TextVQA         TextVQA_0.5.1_val.json    {"data": [{"question_id", "question", "image_id", "answers"}]}
    ChartQA         test_human.json, test_augmented.json   [{"imgname", "query", "label"}] + png/
    AI2D            lmms-lab parquet or JSON  {"question", "options", "answer" (index or letter), "image"}
    VQAv2           *questions.json + *annotations.json (joined on question_id) + <subtype>/COCO_*.jpg
    Video-MME       lmms-lab parquet or JSON  {"question_id", "videoID", "question", "options", "answer", ...}
    ActivityNet-RTL annot_val_1_q229.json     [{"vid", "question", "answer" ("<12.5> ... <30.0>"), "duration"}]
    synth           heldout.jsonl of `nvila synth` (one sample per answer of each record)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvila.errors import ConfigError
from nvila.json_io import read_json, read_jsonl  # ConfigError naming the file, line and column
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN
from nvila.temporal import parse_interval

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")


@dataclass
class EvalSample:
    """One question of a benchmark, ready to prompt and score."""

    id: str  #: unique within the benchmark; predictions.jsonl is keyed on it
    question: str  #: as the benchmark words it (synth: with its media placeholders)
    answers: list[str]  #: gold answers (VQA: the human answers; multiple choice: [letter])
    images: list[Any] = field(default_factory=list)  #: paths, or encoded bytes from parquet
    videos: list[Any] = field(default_factory=list)  #: paths
    task: str = ""  #: sub-task / source for per-task scores ("" when the benchmark has none)
    options: list[str] | None = None  #: multiple-choice option texts, without their letters
    meta: dict = field(default_factory=dict)  #: e.g. "template" (synth), "duration" and "interval" (localization)


# ---- files and fields ---------------------------------------------------------------------------------------
def find_file(data: Path, names: Sequence[str], what: str, patterns: Sequence[str] = ()) -> Path:
    """`data` itself when it is a file, else the first of `names`, else the only match of `patterns`."""
    if data.is_file():
        return data
    if not data.is_dir():
        raise ConfigError(f"{what}: data folder {data} does not exist")
    for name in names:
        if (data / name).is_file():
            return data / name
    for pattern in patterns:
        found = sorted(data.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"{what}: several files match {pattern} in {data}: {', '.join(p.name for p in found)}")
    raise ConfigError(f"{what}: no {' or '.join(names)} in {data}")


def read_parquet(path: Path) -> list[dict]:
    """Rows of a parquet file as dicts, with pyarrow or else pandas (both optional)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError(
                f"{path}: reading parquet needs pyarrow or pandas (pip install pyarrow), or give the benchmark as JSON"
            ) from None
        return pd.read_parquet(path).to_dict("records")
    return pq.read_table(path).to_pylist()


def read_records(path: Path) -> list[dict]:
    """A list of records from .json (a list, or {"data": [...]}), .jsonl or .parquet."""
    if path.suffix == ".parquet":
        return read_parquet(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    data = read_json(path)
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if not isinstance(data, list):
        raise ConfigError(f'{path}: expected a list of records (or {{"data": [...]}}), got {type(data).__name__}')
    return data


def get(record: Any, keys: str | Sequence[str], path: Path, index: int | None) -> Any:
    """record[key] for the first of `keys` present; else a `ConfigError` naming the file, record and field.

    `index` None: `record` is the file's top-level object.
    """
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    where = _where(path, index)
    if not isinstance(record, dict):
        raise ConfigError(f"{where} is a {type(record).__name__}, not an object")
    for key in keys:
        if key in record and record[key] is not None:
            return record[key]
    raise ConfigError(f"{where} has no field {' or '.join(repr(k) for k in keys)}")


def find_media(name: str, folders: Iterable[Path], path: Path, index: int) -> Path:
    """The first existing folder/name; else a `ConfigError` naming the record and the places looked in."""
    folders = list(dict.fromkeys(folders))
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    looked = ", ".join(str(f) for f in folders)
    raise ConfigError(f"{path}: record {index}: media file {name!r} not found in {looked}")


def check_unique(samples: list[EvalSample], path: Path) -> list[EvalSample]:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise ConfigError(f"{path}: the id {sample.id!r} appears twice; predictions are keyed on ids")
        seen.add(sample.id)
    return samples


def _where(path: Path, index: int | None) -> str:
    return f"{path}: record {index}" if index is not None else f"{path}: the top-level object"


def _list(value: Any, path: Path, index: int | None, key: str) -> list:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ConfigError(f"{_where(path, index)}: field {key!r} must be a list, got {type(value).__name__}")
    return list(value)


def _strings(value: Any, path: Path, index: int, key: str) -> list[str]:
    return [str(v) for v in _list(value, path, index, key)]


def _number(value: Any, path: Path, index: int, key: str, *, positive: bool = False) -> float:
    """A finite number (or a numeric string); `positive`: > 0."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (positive and number <= 0):
        kind = "a positive number" if positive else "a number"
        raise ConfigError(f"{_where(path, index)}: field {key!r} must be {kind}, got {value!r}")
    return number


# ---- document / scene-text VQA ------------------------------------------------------------------------------
def _load_doc_style(data: Path, what: str, names: Sequence[str], image_keys: Sequence[str], subdirs: Sequence[str]):
    path = find_file(data, names, what, patterns=("*val*.json",))
    folders = [path.parent, *(path.parent / d for d in subdirs)]
    samples = []
    for i, r in enumerate(read_records(path)):
        image = find_media(str(get(r, image_keys, path, i)), folders, path, i)
        samples.append(
            EvalSample(
                id=str(get(r, "questionId", path, i)),
                question=str(get(r, "question", path, i)),
                answers=_strings(get(r, "answers", path, i), path, i, "answers"),
                images=[image],
            )
        )
    return check_unique(samples, path)


def load_docvqa(data: Path) -> list[EvalSample]:
    """DocVQA val: val_v1.0_withQT.json or val_v1.0.json; "image" is relative to the JSON's folder
    ("documents/xxx.png")."""
    return _load_doc_style(data, "docvqa", ("val_v1.0_withQT.json", "val_v1.0.json"), ("image",), ("documents",))


def load_infovqa(data: Path) -> list[EvalSample]:
    """InfographicVQA val: infographicsVQA_val_v1.0_withQT.json (or infographicVQA_*); the image named by
    "image_local_name" (or "image") beside the JSON or in infographicsvqa_images/ or images/."""
    names = (
        "infographicsVQA_val_v1.0_withQT.json",
        "infographicVQA_val_v1.0_withQT.json",
        "infographicsVQA_val_v1.0.json",
        "infographicVQA_val_v1.0.json",
    )
    subdirs = ("infographicsvqa_images", "infographicVQA_val_v1.0_images", "images")
    return _load_doc_style(data, "infovqa", names, ("image_local_name", "image"), subdirs)


def load_textvqa(data: Path) -> list[EvalSample]:
    """TextVQA val: TextVQA_0.5.1_val.json with images/<image_id>.jpg (or train_images/, as the val images
    ship in train_val_images.zip)."""
    path = find_file(data, ("TextVQA_0.5.1_val.json",), "textvqa", patterns=("TextVQA_*val*.json",))
    root = path.parent
    folders = [root / "images", root / "train_images", root / "train_val_images" / "train_images", root]
    samples = []
    for i, r in enumerate(read_records(path)):
        samples.append(
            EvalSample(
                id=str(get(r, "question_id", path, i)),
                question=str(get(r, "question", path, i)),
                answers=_strings(get(r, "answers", path, i), path, i, "answers"),
                images=[find_media(f"{get(r, 'image_id', path, i)}.jpg", folders, path, i)],
            )
        )
    return check_unique(samples, path)


def load_chartqa(data: Path) -> list[EvalSample]:
    """ChartQA test: test_human.json and/or test_augmented.json with png/ beside them (in `data` or data/test/).
    Sub-tasks "human" and "augmented"; ids are "<split>-<index>" (the files have none)."""
    folder = data / "test" if (data / "test" / "png").is_dir() else data
    files = [(split, folder / f"test_{split}.json") for split in ("human", "augmented")]
    files = [(split, p) for split, p in files if p.is_file()]
    if data.is_file():
        files = [("augmented" if "augmented" in data.name else "human", data)]
    if not files:
        raise ConfigError(f"chartqa: no test_human.json or test_augmented.json in {folder}")
    samples = []
    for split, path in files:
        for i, r in enumerate(read_records(path)):
            samples.append(
                EvalSample(
                    id=f"{split}-{i}",
                    question=str(get(r, "query", path, i)),
                    answers=[str(get(r, "label", path, i))],
                    images=[find_media(str(get(r, "imgname", path, i)), [path.parent / "png"], path, i)],
                    task=split,
                )
            )
    return samples


def load_vqav2(data: Path) -> list[EvalSample]:
    """VQAv2 val: *questions.json and *annotations.json (e.g. v2_OpenEnded_mscoco_val2014_questions.json,
    v2_mscoco_val2014_annotations.json), joined on question_id; images <subtype>/COCO_<subtype>_<id:012d>.jpg
    (in `data` or data/images). Sub-tasks are the answer types (yes/no, number, other)."""
    questions_path = find_file(data, (), "vqav2 questions", patterns=("*questions.json",))
    annotations_path = find_file(data, (), "vqav2 annotations", patterns=("*annotations.json",))
    questions = read_json(questions_path)
    records = _list(get(questions, "questions", questions_path, None), questions_path, None, "questions")
    subtype = str(questions.get("data_subtype") or "val2014")
    annotations = {}
    listed = get(read_json(annotations_path), "annotations", annotations_path, None)
    for i, a in enumerate(_list(listed, annotations_path, None, "annotations")):
        annotations[str(get(a, "question_id", annotations_path, i))] = (i, a)
    folders = [data / subtype, data / "images" / subtype, data / "images", data]
    samples = []
    for i, q in enumerate(records):
        qid = str(get(q, "question_id", questions_path, i))
        if qid not in annotations:
            raise ConfigError(f"{annotations_path}: no annotation for question_id {qid} of {questions_path.name}")
        j, a = annotations[qid]
        answers = [
            str(get(x, "answer", annotations_path, j))
            for x in _list(get(a, "answers", annotations_path, j), annotations_path, j, "answers")
        ]
        image_id = _number(get(q, "image_id", questions_path, i), questions_path, i, "image_id")
        if not image_id.is_integer():
            raise ConfigError(f"{questions_path}: record {i}: field 'image_id' must be a whole number, got {image_id}")
        image = f"COCO_{subtype}_{int(image_id):012d}.jpg"
        samples.append(
            EvalSample(
                id=qid,
                question=str(get(q, "question", questions_path, i)),
                answers=answers,
                images=[find_media(image, folders, questions_path, i)],
                task=str(a.get("answer_type", "")),
            )
        )
    return check_unique(samples, questions_path)


# ---- multiple choice ----------------------------------------------------------------------------------------
def answer_letter(value: Any, n_options: int, path: Path, index: int) -> str:
    """An answer given as a letter ("B"), an index (1) or an index string ("1") -> its letter."""
    text = str(value).strip()
    if text.isdigit() and int(text) < n_options:
        return LETTERS[int(text)]
    if len(text) == 1 and text.upper() in LETTERS[:n_options]:
        return text.upper()
    raise ConfigError(
        f"{path}: record {index}: field 'answer' must be an option letter or index among {n_options}, got {value!r}"
    )


_LETTERED = re.compile(r"^\s*\(?([A-Z])[.):]\s*")


def option_texts(options: list[str]) -> list[str]:
    """Strip "A. " prefixes when every option has the letter of its position (Video-MME writes them)."""
    matches = [_LETTERED.match(o) for o in options]
    if all(m and m.group(1) == LETTERS[k] for k, m in enumerate(matches)):
        return [o[m.end() :] for o, m in zip(options, matches)]
    return options


def _image_value(value: Any, folders: list[Path], path: Path, index: int) -> Any:
    """An image field: a relative path, or the {"bytes", "path"} struct of a HF parquet, or raw bytes."""
    if isinstance(value, dict):
        if value.get("bytes"):
            if not isinstance(value["bytes"], (bytes, bytearray)):
                raise ConfigError(f"{path}: record {index}: field 'image' holds bytes only in parquet; give a path")
            return bytes(value["bytes"])
        value = value.get("path")
        if not value:
            raise ConfigError(f"{path}: record {index}: field 'image' has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return find_media(str(value), folders, path, index)


def _records_file(data: Path, what: str, names: Sequence[str]) -> Path:
    return find_file(data, names, what, patterns=("*.parquet", "*/*.parquet", "*.json", "*.jsonl"))


def load_ai2d(data: Path) -> list[EvalSample]:
    """AI2D test as lmms-lab/ai2d publishes it (parquet under data/, image bytes inline) or as JSON / JSONL
    records with an image path relative to the file; "answer" is an option index or letter."""
    path = _records_file(data, "ai2d", ("ai2d.json", "test.json", "ai2d.jsonl", "test.jsonl"))
    folders = [path.parent, path.parent / "images"]
    samples = []
    for i, r in enumerate(read_records(path)):
        options = _strings(get(r, "options", path, i), path, i, "options")
        samples.append(
            EvalSample(
                id=str(r.get("question_id", r.get("id", i))),
                question=str(get(r, "question", path, i)),
                answers=[answer_letter(get(r, "answer", path, i), len(options), path, i)],
                images=[_image_value(get(r, "image", path, i), folders, path, i)],
                options=options,
            )
        )
    return check_unique(samples, path)


def load_videomme(data: Path) -> list[EvalSample]:
    """Video-MME as lmms-lab/Video-MME publishes it (videomme/test-*.parquet, or the same fields as JSON):
    videos <videoID>.mp4 in data/, videos/ or beside the file. Sub-tasks are the durations (short, medium,
    long); "task_type" and "domain" are kept in meta."""
    path = _records_file(data, "videomme", ("videomme.json", "test.json", "videomme.jsonl"))
    root = data if data.is_dir() else path.parent
    folders = [root / "data", root / "videos", root, path.parent]
    samples = []
    for i, r in enumerate(read_records(path)):
        options = option_texts(_strings(get(r, "options", path, i), path, i, "options"))
        video_id = str(get(r, ("videoID", "video_id"), path, i))
        video = _find_video(video_id, folders, path, i)
        samples.append(
            EvalSample(
                id=str(get(r, "question_id", path, i)),
                question=str(get(r, "question", path, i)),
                answers=[answer_letter(get(r, "answer", path, i), len(options), path, i)],
                videos=[video],
                task=str(get(r, "duration", path, i)),
                options=options,
                meta={k: r[k] for k in ("task_type", "domain", "sub_category") if k in r},
            )
        )
    return check_unique(samples, path)


def _find_video(stem: str, folders: list[Path], path: Path, index: int) -> Path:
    for folder in dict.fromkeys(folders):
        for suffix in VIDEO_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    looked = ", ".join(str(f) for f in dict.fromkeys(folders))
    raise ConfigError(f"{path}: record {index}: no video {stem}.mp4 (or .mkv, .webm, ...) in {looked}")


# ---- temporal localization ----------------------------------------------------------------------------------


def load_activitynet_rtl(data: Path) -> list[EvalSample]:
    """ActivityNet-RTL (LITA) annot_val_1_q229.json: [{"vid", "question", "answer" with two <t> timestamps,
    "duration"}]; videos v_<vid>.mp4 (or <vid>.mp4) in data/, videos/ or beside the file."""
    path = find_file(data, ("annot_val_1_q229.json",), "activitynet_rtl", patterns=("*.json",))
    root = data if data.is_dir() else path.parent
    folders = [root / "videos", root, path.parent]
    samples = []
    for i, r in enumerate(read_records(path)):
        vid = str(get(r, "vid", path, i))
        duration = _number(get(r, "duration", path, i), path, i, "duration", positive=True)
        answer = str(get(r, "answer", path, i))
        interval = parse_interval(answer, duration)
        if interval is None:
            raise ConfigError(f"{path}: record {i}: field 'answer' has no two timestamps: {answer!r}")
        try:
            video = _find_video(f"v_{vid}", folders, path, i)
        except ConfigError:
            video = _find_video(vid, folders, path, i)
        samples.append(
            EvalSample(
                id=str(r.get("question_id", f"{vid}-{i}")),
                question=str(get(r, "question", path, i)),
                answers=[answer],
                videos=[video],
                meta={"duration": duration, "interval": list(interval), "vid": vid},
            )
        )
    return check_unique(samples, path)


# ---- nvila synth ----------------------------------------------------------------------------------------------
def synth_records_file(data: Path) -> Path:
    return find_file(data, ("heldout.jsonl",), "synth")


def load_synth(data: Path) -> list[EvalSample]:
    """The held-out split of an `nvila synth` dataset: one sample per answer, id "<record id>#<k>".

    Each question is asked on its own with the record's media, worded as the first turn of a training record
    ("<image>\\n" lines, or "<vila/video>\\n", then the question). Sub-tasks are the sources; the template id
    and, for events, the duration go to meta.
    """
    path = synth_records_file(data)
    root = path.parent
    samples = []
    for i, r in enumerate(read_jsonl(path)):
        key = "image" if isinstance(r, dict) and r.get("image") is not None else "video"
        media = get(r, key, path, i)
        media = [media] if isinstance(media, str) else _strings(media, path, i, key)
        for p in media:
            if not (root / p).is_file():
                raise ConfigError(f"{path}: record {i}: media file {p!r} not found under {root}")
        video = key == "video"
        prefix = f"{VIDEO_TOKEN}\n" if video else f"{IMAGE_TOKEN}\n" * len(media)
        meta = r.get("meta") or {}
        if not isinstance(meta, dict):
            raise ConfigError(f"{path}: record {i}: field 'meta' must be an object, got {type(meta).__name__}")
        turns = _list(get(r, "conversations", path, i), path, i, "conversations")
        for k, (turn, reply) in enumerate(zip(turns[0::2], turns[1::2])):
            if not (isinstance(turn, dict) and isinstance(reply, dict)):
                raise ConfigError(f"{path}: record {i}: conversations must be a list of {{'from', 'value'}} objects")
            if turn.get("from") != "human" or reply.get("from") != "gpt":
                raise ConfigError(f"{path}: record {i}: conversations must alternate human / gpt turns")
            question = str(get(turn, "value", path, i)).replace(IMAGE_TOKEN, "").replace(VIDEO_TOKEN, "").strip()
            templates = meta.get("templates") or [meta.get("template", "")]
            extra = (
                {"duration": _number(meta["duration"], path, i, "meta.duration", positive=True)}
                if "duration" in meta
                else {}
            )
            samples.append(
                EvalSample(
                    id=f"{get(r, 'id', path, i)}#{k}",
                    question=prefix + question,
                    answers=[str(get(reply, "value", path, i))],
                    images=[] if video else [root / p for p in media],
                    videos=[root / p for p in media] if video else [],
                    task=str(get(r, "source", path, i)),
                    meta={"template": templates[k] if k < len(templates) else "", "record": str(r["id"]), **extra},
                )
            )
    return check_unique(samples, path)
