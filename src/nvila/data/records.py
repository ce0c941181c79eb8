"""LLaVA-style conversation records: reading JSON / JSONL files and checking each record's shape.

A record::

    {"id": "charts-000001", "source": "charts", "image": "images/a.png" | [..], "video": "v.mp4" | [..],
     "conversations": [{"from": "human", "value": "<image>\\nQuestion?"}, {"from": "gpt", "value": "Answer"}],
     "meta": {...}}

Media paths are relative to a root folder (default: the file's folder). Owns parsing and validation with
the file name and line number in every error; does not touch media or tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvila.errors import ConfigError
from nvila.json_io import read_json, read_jsonl_lines
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class Record:
    """One training conversation with its media (absolute paths)."""

    id: str
    source: str
    messages: list[dict[str, str]]  #: [{"role": "user" | "assistant" | "system", "content": str}]
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answers(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_record(data: Any, where: str, root: Path, default_source: str) -> Record:
    """Validate one decoded JSON object; `where` ("file:line") prefixes every error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a record must be a JSON object")
    turns = data.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ConfigError(f"{where}: 'conversations' must be a non-empty list")
    messages = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or turn.get("from") not in ROLES:
            raise ConfigError(
                f"{where}: conversation turn {k + 1} needs 'from' ({'/'.join(ROLES)}) and a string 'value'"
            )
        messages.append({"role": ROLES[turn["from"]], "content": turn["value"]})
    if not any(m["role"] == "assistant" for m in messages):
        raise ConfigError(f"{where}: the conversation has no assistant (gpt) answer to learn")
    images = [root / p for p in _as_list(data.get("image"))]
    videos = [root / p for p in _as_list(data.get("video"))]
    text = "".join(m["content"] for m in messages)
    n_image_marks, n_video_marks = text.count(IMAGE_TOKEN), text.count(VIDEO_TOKEN)
    if n_image_marks not in (0, len(images)):
        raise ConfigError(f"{where}: {n_image_marks} {IMAGE_TOKEN} placeholder(s) for {len(images)} image(s)")
    if n_video_marks not in (0, len(videos)):
        raise ConfigError(f"{where}: {n_video_marks} {VIDEO_TOKEN} placeholder(s) for {len(videos)} video(s)")
    meta = data.get("meta") or {}
    return Record(
        id=str(data.get("id", where)),
        source=str(data.get("source") or default_source),
        messages=messages,
        images=images,
        videos=videos,
        meta=meta if isinstance(meta, dict) else {"value": meta},
    )


def read_raw(path: Path) -> list[tuple[int, Any]]:
    """(position from 1, decoded item) of every record of a .jsonl file (its line) or a .json file (its index in
    the list, + 1), in file order; `ConfigError` naming the file and line of unreadable JSON."""
    if path.suffix == ".json":
        return list(enumerate(read_json(path, ConfigError, want=list), start=1))
    return read_jsonl_lines(path, ConfigError)


def read_records(path: str | Path, media_root: str | Path | None = None) -> list[Record]:
    """Read a .jsonl (one record per line) or .json (a list of records) file.

    Raises `ConfigError` naming the file and line of the first malformed record, or when there are none.
    The source of records without one is the file's stem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset file not found: {path}")
    root = Path(media_root) if media_root is not None else path.parent
    in_list = path.suffix == ".json"
    records = [
        parse_record(item, f"{path}[{n - 1}]" if in_list else f"{path}:{n}", root, path.stem)
        for n, item in read_raw(path)
    ]
    if not records:
        raise ConfigError(f"{path}: the dataset is empty")
    return records
