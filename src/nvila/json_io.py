"""Reading JSON and JSON-lines files with errors that say where: the file, and the line and column.

Owns: `read_json`, `read_jsonl` and `read_jsonl_lines`. Each raises the caller's `NVILAError` subclass
(`ConfigError` for benchmark, dataset and result files, `CheckpointError` for checkpoints) for a missing or
unreadable file, bytes that are not UTF-8 text, malformed JSON (`path:line:column: malformed JSON (reason)`),
JSON nested too deeply to parse, and, with `want=dict` / `want=list`, a file that holds another kind of value.
A UTF-8 byte-order mark is allowed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nvila.errors import ConfigError, NVILAError

#: How an error names the JSON kind of a parsed value.
_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}
#: The kinds `want` accepts, as errors name them.
_WANTED = {dict: "object", list: "array"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _KINDS.get(type(value), type(value).__name__)


def _text(path: Path, error: type[NVILAError]) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"missing file: {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder, not a JSON file") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); JSON files must be UTF-8") from None


def _parse(text: str, where: str, error: type[NVILAError], line_offset: int = 0) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}:{e.lineno + line_offset}:{e.colno}: malformed JSON ({e.msg})") from None
    except RecursionError:
        raise error(f"{where}:{line_offset + 1}: JSON nested too deeply to read") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise error(f"{where}:{line_offset + 1}: unreadable JSON ({e})") from None


def read_json(path: str | os.PathLike, error: type[NVILAError] = ConfigError, *, want: type | None = None) -> Any:
    """The value in the JSON file at `path`; `error(message)` naming the file (and line, column) otherwise.

    `want` (dict or list): the top-level value must be of that kind.
    """
    if want is not None and want not in _WANTED:
        raise ValueError(f"want must be dict, list or None, got {want!r}")
    path = Path(path)
    value = _parse(_text(path, error), str(path), error)
    if want is not None and not isinstance(value, want):
        raise error(f"{path} must hold a JSON {_WANTED[want]}, not {_kind(value)}")
    return value


def read_jsonl_lines(path: str | os.PathLike, error: type[NVILAError] = ConfigError) -> list[tuple[int, Any]]:
    """(line number from 1, value) of each non-blank line of a JSON-lines file; `error` naming the file, line
    and column otherwise."""
    path = Path(path)
    return [
        (n + 1, _parse(line, str(path), error, line_offset=n))
        for n, line in enumerate(_text(path, error).split("\n"))  # not splitlines: U+2028 may sit in a string
        if line.strip()
    ]


def read_jsonl(path: str | os.PathLike, error: type[NVILAError] = ConfigError) -> list[Any]:
    """The values of a JSON-lines file, one per non-blank line; `error` naming the file, line and column."""
    return [value for _, value in read_jsonl_lines(path, error)]
