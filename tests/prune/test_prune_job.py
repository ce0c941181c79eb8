"""`nvila prune` end to end: pruned files, histogram, rerun without rescoring, and refused inputs."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from nvila.errors import ConfigError
from nvila.prune import add_prune_args, run_prune


def prune_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_prune_args(parser)
    return run_prune(parser.parse_args(list(argv)))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_deltaloss_keeps_the_top_half_of_every_source(model_pair, colour_data, tmp_path):
    large, small = model_pair
    out = tmp_path / "pruned" / "half.jsonl"
    args = ["--large", str(large), "--small", str(small), "--data", str(colour_data), "--keep", "0.5",
            "--out", str(out), "--batch-size", "4", "--device", "cpu"]  # fmt: skip
    assert prune_cli(*args) == 0
    scores_file = out.parent / "train.deltaloss-scores.jsonl"
    rows = read_jsonl(scores_file)[1:]
    kept = read_jsonl(out)
    original = {r["id"]: r for r in read_jsonl(colour_data)}
    for source in ("names", "colours"):
        mine = sorted((r for r in rows if r["source"] == source), key=lambda r: -r["score"])
        expected = {r["id"] for r in mine[: math.ceil(len(mine) / 2)]}
        assert {r["id"] for r in kept if r["source"] == source} == expected
    for record in kept:  # verbatim, with the image path rebased onto the output's folder
        source_image = colour_data.parent / original[record["id"]]["image"]
        assert (out.parent / record["image"]).resolve() == source_image.resolve()
        assert {k: v for k, v in record.items() if k != "image"} == {
            k: v for k, v in original[record["id"]].items() if k != "image"
        }
    assert [r["id"] for r in kept] == [i for i in original if i in {r["id"] for r in kept}]  # file order
    assert out.with_suffix(".hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    size = scores_file.stat().st_size
    assert prune_cli(*args[:-4], "--keep", "0.25", "--out", str(tmp_path / "pruned" / "quarter.jsonl"),
                     "--device", "cpu") == 0  # fmt: skip
    assert scores_file.stat().st_size == size  # the second keep reused every score
    assert len(read_jsonl(tmp_path / "pruned" / "quarter.jsonl")) == 2 + 2


def test_records_without_source_are_refused_when_pruning_by_source(colour_data, tmp_path):
    lines = colour_data.read_text().splitlines()
    record = json.loads(lines[2])
    del record["source"]
    lines[2] = json.dumps(record)
    colour_data.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"1 record\(s\) have no 'source' \(line 3\)"):
        prune_cli("--data", str(colour_data), "--method", "random")
    assert prune_cli("--data", str(colour_data), "--method", "random", "--by", "none", "--keep", "0.5") == 0
    assert len(read_jsonl(colour_data.with_name("train.random50.jsonl"))) == 8


def test_an_empty_sub_dataset_is_refused(model_pair, colour_data):
    for record in read_jsonl(colour_data):
        if record["source"] == "colours":
            (colour_data.parent / record["image"]).unlink()
    with pytest.raises(ConfigError, match="sub-dataset 'colours' has no usable records .*missing media file"):
        prune_cli("--large", str(model_pair[0]), "--small", str(model_pair[1]), "--data", str(colour_data),
                  "--device", "cpu")  # fmt: skip


def test_bad_arguments_are_refused(colour_data):
    with pytest.raises(SystemExit) as exit_info:
        prune_cli("--data", str(colour_data), "--keep", "1.5")
    assert exit_info.value.code == 2
    with pytest.raises(ConfigError, match="needs both --large and --small"):
        prune_cli("--data", str(colour_data), "--small", "x")


def test_the_cli_choices_match_the_library():
    from nvila.prune import cli, job

    assert (cli.PRUNE_METHODS, cli.GROUPINGS) == (job.PRUNE_METHODS, job.GROUPINGS)
