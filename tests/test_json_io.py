"""JSON files: values read back, and every bad file an error of the caller's type naming the file and place."""

from __future__ import annotations

import json

import pytest

from nvila.errors import CheckpointError, ConfigError
from nvila.json_io import read_json, read_jsonl


def test_values_are_read_back_with_or_without_a_byte_order_mark(tmp_path):
    data = {"name": "caf\u00e9", "items": [1, 2.5, None], "line": "a\u2028b"}
    (tmp_path / "a.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(data).encode())
    assert read_json(tmp_path / "a.json") == data == read_json(str(tmp_path / "bom.json"), want=dict)
    lines = [json.dumps(data, ensure_ascii=False), "", json.dumps([1])]  # U+2028 inside a string is no line break
    (tmp_path / "a.jsonl").write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    assert read_jsonl(tmp_path / "a.jsonl") == [data, [1]]


@pytest.mark.parametrize("error", [ConfigError, CheckpointError])
def test_malformed_json_names_the_file_line_and_column(tmp_path, error):
    path = tmp_path / "config.json"
    path.write_text('{\n  "a": 1,\n  "b": [1 2]\n}')
    with pytest.raises(error, match=r"config\.json:3:11: malformed JSON \(Expecting ',' delimiter\)$"):
        read_json(path, error)
    lines = tmp_path / "records.jsonl"
    lines.write_text('{"a": 1}\n\n{"a": }\n')
    with pytest.raises(error, match=r"records\.jsonl:3:7: malformed JSON \(Expecting value\)"):
        read_jsonl(lines, error)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"^missing file: .*nope\.json$"):
        read_json(tmp_path / "nope.json", CheckpointError)
    with pytest.raises(ConfigError, match="is a folder, not a JSON file"):
        read_json(tmp_path)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"a":\n "caf\xe9"}')
    with pytest.raises(ConfigError, match=r"latin1\.json:2: not UTF-8 text \(byte 0xe9\)"):
        read_json(latin1)
    with pytest.raises(ConfigError, match=r"latin1\.json:2: not UTF-8"):
        read_jsonl(latin1)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match=r"deep\.json:1: JSON nested too deeply"):
        read_json(deep)
    big = tmp_path / "big.json"
    big.write_text("1" * 5000)
    with pytest.raises(ConfigError, match=r"big\.json:1: unreadable JSON"):
        read_json(big)


def test_want_checks_the_kind_of_the_top_level_value(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    assert read_json(path, want=list) == [1, 2]
    with pytest.raises(CheckpointError, match=r"list\.json must hold a JSON object, not an array"):
        read_json(path, CheckpointError, want=dict)
    path.write_text("null")
    with pytest.raises(ConfigError, match="must hold a JSON array, not null"):
        read_json(path, want=list)
    with pytest.raises(ValueError, match="want must be dict, list or None"):
        read_json(path, want=str)
