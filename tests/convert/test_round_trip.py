"""official -> HF -> official gives back the same folder: tensors bit for bit, configs, tokenizer files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nvila
from nvila.checkpoint import PARTS
from nvila.convert.layout import RECORD_NAME
from nvila.convert.to_official import to_official
from tests.convert.conftest import copy


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def files(folder: Path) -> dict[str, bytes]:
    """Every file but the weights, by path relative to `folder`."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".safetensors" and p.name != "model.safetensors.index.json"
    }


@pytest.mark.parametrize("name", ["tiny", "tiny-lite"])
def test_round_trip_restores_the_official_folder(official, hf, tmp_path, name):
    back = to_official(hf[name], tmp_path / "back").path
    for part in PARTS:
        before, after = tensors(official[name] / part), tensors(back / part)
        assert before.keys() == after.keys()
        for key in before:
            assert before[key].dtype == after[key].dtype and torch.equal(before[key], after[key]), key
    source, result = files(official[name]), files(back)
    assert source.keys() == result.keys()
    for path in source:
        if path == "config.json":  # the same JSON (key order may differ)
            assert json.loads(source[path]) == json.loads(result[path])
        else:  # part configs, preprocessor config, tokenizer files: byte for byte
            assert source[path] == result[path], path


def test_sharded_folder_lists_every_tensor_in_its_index(official, hf):
    index = json.loads((hf["tiny-lite"] / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in hf["tiny-lite"].glob("*.safetensors"))
    assert len(shards) > 2 and sorted(set(index["weight_map"].values())) == shards
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    stored = tensors(hf["tiny-lite"])
    assert set(index["weight_map"]) == set(stored)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in stored.values())
    assert all(f.stat().st_size < 64_000 + 4096 for f in hf["tiny-lite"].glob("*.safetensors"))


def test_round_trip_loads_the_same_model(official, hf, tmp_path):
    model, processor = nvila.load(official["tiny"])
    again, processor2 = nvila.load(to_official(hf["tiny"], tmp_path / "back", max_shard_bytes=10_000).path)
    assert sorted((tmp_path / "back" / "llm").glob("model-*.safetensors"))  # sharded per part
    assert processor.config.replace(name="back") == processor2.config
    state, reference = again.state_dict(), model.state_dict()
    assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in reference)


def test_folder_without_a_record_is_converted_with_the_preset_geometry(official, hf, tmp_path):
    """An HF folder written elsewhere has only the HF keys: the official ones come from the nvila-lite preset."""
    folder = copy(hf["tiny-lite"], tmp_path / "released")
    (folder / RECORD_NAME).unlink()
    config = json.loads((folder / "config.json").read_text())
    keep = ("architectures", "model_type", "text_config", "vision_config", "image_token_id", "video_token_id")
    (folder / "config.json").write_text(json.dumps({k: config[k] for k in keep}))
    back = to_official(folder, tmp_path / "back").path
    top = json.loads((back / "config.json").read_text())
    assert top["image_aspect_ratio"] == "dynamic" and top["mm_projector"] == "mlp_downsample_3x3_fix"
    assert top["hidden_size"] == 32 and top["mm_hidden_size"] == 32
    model, _ = nvila.load(back)
    original, _ = nvila.load(official["tiny-lite"])
    state, reference = model.state_dict(), original.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in reference)
