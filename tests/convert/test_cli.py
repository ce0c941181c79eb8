"""`nvila convert` end to end and its refusals: one-line errors (exit 1), bad usage (exit 2), and no partial
output left behind."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file, save_file

from nvila.cli import main
from nvila.convert.layout import RECORD_NAME
from tests.conftest import assert_modes_follow_umask
from tests.convert.conftest import copy


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def fails(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("nvila convert: error:"), err
    return err


def test_both_ways_through_the_command(official, tmp_path, capsys, caplog):
    code, out, _ = run(capsys, "--to", "hf", official["tiny-lite"], tmp_path / "hf", "--max-shard-size", "100kB")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'hf'}: hf layout, nvila_lite, ")
    assert "SGLang: the vision tower is 32 wide" in caplog.text
    auto_map = json.loads((tmp_path / "hf" / "config.json").read_text())["auto_map"]
    assert {ref.split(".")[0] + ".py" for ref in auto_map.values()} == {
        p.name for p in (tmp_path / "hf").glob("*.py")
    }  # nvila's own remote code, every module the auto_map names
    assert len(list((tmp_path / "hf").glob("model-*-of-*.safetensors"))) > 1
    assert_modes_follow_umask(tmp_path / "hf")
    code, out, _ = run(capsys, "--to", "official", tmp_path / "hf", tmp_path / "back")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'back'}: official layout, nvila_lite, ")
    assert (tmp_path / "back" / "llm" / "tokenizer.json").read_bytes() == (
        official["tiny-lite"] / "llm" / "tokenizer.json"
    ).read_bytes()
    assert_modes_follow_umask(tmp_path / "back")


def test_unknown_target_and_bad_sizes_are_usage_errors(official, tmp_path, capsys):
    for argv in (["--to", "gguf", official["tiny"], tmp_path / "x"], ["--to", "hf", official["tiny"]]):
        with pytest.raises(SystemExit) as info:
            run(capsys, *argv)
        assert info.value.code == 2
    with pytest.raises(SystemExit):
        run(capsys, "--to", "hf", official["tiny"], tmp_path / "x", "--max-shard-size", "5XB")
    assert "expected a size such as 5GB" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_input_folders_that_do_not_fit(official, hf, tmp_path, capsys):
    assert "checkpoint folder not found" in fails(capsys, "--to", "hf", tmp_path / "nowhere", tmp_path / "a")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{}")
    assert "is neither an official NVILA checkpoint" in fails(capsys, "--to", "hf", tmp_path / "junk", tmp_path / "a")
    assert "already in the hf layout; to convert it use --to official" in fails(
        capsys, "--to", "hf", hf["tiny"], tmp_path / "a"
    )
    assert "already in the official layout; to convert it use --to hf" in fails(
        capsys, "--to", "official", official["tiny"], tmp_path / "a"
    )
    assert "must not be the checkpoint folder, lie inside it" in fails(
        capsys, "--to", "hf", official["tiny"], official["tiny"] / "hf", "--overwrite"
    )
    assert not (tmp_path / "a").exists() and not (official["tiny"] / "hf").exists()


def test_existing_output_needs_overwrite(official, tmp_path, capsys):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "already exists; pass --overwrite" in fails(capsys, "--to", "hf", official["tiny"], out)
    assert (out / "keep.txt").read_text() == "mine"
    assert run(capsys, "--to", "hf", official["tiny"], out, "--overwrite")[0] == 0
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()


def test_missing_or_broken_files_leave_no_output(official, hf, tmp_path, capsys):
    broken = copy(official["tiny"], tmp_path / "broken")
    (broken / "mm_projector" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{nope}!!")
    assert "cannot read" in fails(capsys, "--to", "hf", broken, tmp_path / "out")
    (broken / "mm_projector" / "model.safetensors").unlink()
    assert "no *.safetensors weights" in fails(capsys, "--to", "hf", broken, tmp_path / "out")
    no_tokenizer = copy(official["tiny"], tmp_path / "no-tok")
    (no_tokenizer / "llm" / "tokenizer.json").unlink()
    assert "no tokenizer" in fails(capsys, "--to", "hf", no_tokenizer, tmp_path / "out")
    stray = copy(hf["tiny"], tmp_path / "stray")
    weights = load_file(stray / "model.safetensors")
    weights["lora.A.weight"] = weights["llm.model.norm.weight"].clone()
    save_file(weights, stray / "model.safetensors")
    assert "tensors of no NVILA part" in fails(capsys, "--to", "official", stray, tmp_path / "out")
    record = copy(hf["tiny"], tmp_path / "record")
    (record / "tokenizer.json").unlink()
    assert "missing file" in fails(capsys, "--to", "official", record, tmp_path / "out")
    (record / RECORD_NAME).write_text(json.dumps({"format": 1, "config": {}}))
    assert "is not a conversion record of format 1" in fails(capsys, "--to", "official", record, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary folder either


def test_code_from_copies_the_remote_code_of_the_same_model_type(official, tmp_path, capsys, caplog):
    ref = tmp_path / "NVILA-Lite-2B-hf"
    ref.mkdir()
    auto_map = {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"}
    (ref / "config.json").write_text(json.dumps({"model_type": "nvila_lite", "auto_map": auto_map}))
    (ref / "configuration_x.py").write_text("# config code\n")
    (ref / "processing_x.py").write_text("# processor code\n")
    (ref / "processor_config.json").write_text(json.dumps({"auto_map": {"AutoProcessor": "processing_x.P"}}))
    code, _, _ = run(capsys, "--to", "hf", official["tiny-lite"], tmp_path / "hf", "--code-from", ref)
    out = tmp_path / "hf"
    assert code == 0 and not (out / "modeling_nvila.py").exists()  # the reference's code instead of nvila's
    assert (out / "configuration_x.py").read_text() == "# config code\n" and (out / "processing_x.py").is_file()
    assert json.loads((out / "config.json").read_text())["auto_map"] == auto_map
    assert json.loads((out / "processor_config.json").read_text())["auto_map"]["AutoProcessor"] == "processing_x.P"
    assert (out / RECORD_NAME).is_file()
    assert "is a 'nvila_lite' checkpoint, but this model is 'nvila'" in fails(
        capsys, "--to", "hf", official["tiny"], tmp_path / "hf2", "--code-from", ref
    )
    assert "--code-from only applies to --to hf" in fails(
        capsys, "--to", "official", out, tmp_path / "back", "--code-from", ref
    )
