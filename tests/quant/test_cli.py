"""`nvila quantize` through the real command: bad input gives one clear line and exit code 1 (or 2 for usage)."""

from __future__ import annotations

import json
import shutil

import pytest

from nvila import cli
from nvila.quant import cli as quant_cli
from nvila.quant import job

from ..finetune.conftest import write_colour_dataset


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(["quantize", *argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_parser_choices_match_the_job():
    assert quant_cli.VISION_SCHEMES == job.VISION_SCHEMES and quant_cli.LLM_SCHEMES == job.LLM_SCHEMES


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vision", "w4a4"], "argument --vision: invalid choice: 'w4a4'"),
        (["--llm", "int3"], "argument --llm: invalid choice: 'int3'"),
        (["--smooth-alpha", "2"], "must be in [0, 1] (or 'off'), got 2"),
        (["--group-size", "0"], "must be >= 1, got 0"),
    ],
)
def test_usage_errors(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, "--out", str(tmp_path / "q"), *argv)
    assert code == 2 and message in err


def test_missing_model(capsys, tmp_path):
    code, _, err = run(capsys, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "q"))
    assert code == 1 and f"checkpoint folder not found: {tmp_path / 'nope'}" in err
    assert not (tmp_path / "q").exists()


def test_group_size_that_does_not_divide(capsys, float_checkpoint, tmp_path):
    code, _, err = run(capsys, "--model", str(float_checkpoint), "--out", str(tmp_path / "q"))
    assert code == 1 and "group size 128 does not divide the input width" in err and "--group-size 32 fits" in err
    assert err.count("\n") == 1 and not (tmp_path / "q").exists()


def test_empty_calibration_file(capsys, float_checkpoint, tmp_path):
    empty = tmp_path / "calib.jsonl"
    empty.write_text("\n")
    code, _, err = run(capsys, "--model", str(float_checkpoint), "--out", str(tmp_path / "q"), "--group-size", "32",
                       "--calib", str(empty))  # fmt: skip
    assert code == 1 and "calib.jsonl: the dataset is empty" in err


def test_existing_output_needs_overwrite_and_must_be_a_checkpoint(capsys, float_checkpoint, tmp_path):
    out = tmp_path / "q"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "--model", str(float_checkpoint), "--out", str(out))
    assert code == 1 and "already exists; pass --overwrite" in err
    code, _, err = run(capsys, "--model", str(float_checkpoint), "--out", str(out), "--overwrite")
    assert code == 1 and "is not empty and is not a checkpoint folder" in err
    assert (out / "notes.txt").read_text() == "mine"


def test_the_model_cannot_be_its_own_output(capsys, float_checkpoint):
    code, _, err = run(capsys, "--model", str(float_checkpoint), "--out", str(float_checkpoint), "--overwrite")
    assert code == 1 and "is the model being quantized" in err


def test_vision_only_from_a_records_file_replaces_an_old_output(capsys, float_checkpoint, quantized, tmp_path):
    out = tmp_path / "q"
    shutil.copytree(quantized[0], out)  # an earlier quantized checkpoint, replaced with --overwrite
    records = write_colour_dataset(tmp_path / "calib", n=6)
    code, printed, err = run(capsys, "--model", str(float_checkpoint), "--out", str(out), "--llm", "none",
                             "--calib", str(records), "--calib-samples", "3", "--heldout-samples", "2", "--overwrite",
                             "--smooth-alpha", "off", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert "vision tower W8A8 (no smoothing)" in printed and "KL" in printed and "perplexity" in printed
    report = json.loads((out / "quantization.json").read_text())
    assert report["calibration"] == {"source": str(records), "search_samples": 3, "heldout_samples": 2}
    assert "llm" not in report and report["vision_tower"]["smooth_alpha"] is None
    assert "quantization_config" not in json.loads((out / "llm" / "config.json").read_text())
