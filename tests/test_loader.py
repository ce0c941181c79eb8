"""`nvila.load` and every `--model`: a folder in either layout, or a hub id resolved by the real `huggingface_hub`
code against a hub cache laid out here (no network: `local_files_only`, or `HF_HUB_OFFLINE=1` in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nvila
from nvila.errors import CheckpointError, ConfigError
from nvila.hub import is_hub_id
from tests.conftest import MAIN, REPO, V2, noise_image


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def load_cached(hf_home: Path, model: str, **kwargs):
    return nvila.load(model, cache_dir=hf_home / "hub", local_files_only=True, **kwargs)


def test_a_hub_id_loads_from_the_cache(hf_home, official):
    model, processor = load_cached(hf_home, REPO)
    reference, _ = nvila.load(official["tiny"])
    assert same_weights(model, reference)
    assert model.nvila_config.name == "tiny"  # the repository's name, not the snapshot's hash
    assert processor.config.image_token_id == reference.nvila_config.image_token_id


@pytest.mark.parametrize(("revision", "preset"), [("v2", "tiny-lite"), (V2, "tiny-lite"), (MAIN, "tiny")])
def test_a_revision_selects_its_snapshot_in_either_layout(hf_home, official, revision, preset):
    model, _ = load_cached(hf_home, REPO, revision=revision)
    reference, _ = nvila.load(official[preset])
    assert model.nvila_config.projector_type == reference.nvila_config.projector_type and same_weights(model, reference)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("nvila-test/missing", {}, r"nvila-test/missing is neither a local folder nor in the .*\(`hf download nvila-t"),
        (REPO, {"revision": "v3"}, r"at revision 'v3' is neither a local folder nor in the Hugging"),
        ("no-such-folder", {}, r"checkpoint folder not found: no-such-folder \(a model is a local folder or a hub id"),
    ],
)
def test_what_cannot_be_found_is_one_line_saying_what_to_do(hf_home, model, kwargs, message):
    with pytest.raises(CheckpointError, match=message) as caught:
        load_cached(hf_home, model, **kwargs)
    assert "\n" not in str(caught.value)


def test_a_local_folder_wins_over_a_hub_id_and_refuses_a_revision(tmp_path, official, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    shutil.copytree(official["tiny"], tmp_path / "org" / "tiny")
    assert not is_hub_id("org/tiny") and is_hub_id("org/other")
    model, _ = nvila.load("org/tiny")
    assert model.nvila_config.name == "tiny"
    with pytest.raises(CheckpointError, match="revision='v2' applies to hub ids, but org/tiny is a local folder"):
        nvila.load("org/tiny", revision="v2")


def nvila_command(hf_home: Path, *argv: str) -> subprocess.CompletedProcess:
    """The real `nvila` command with huggingface_hub's own environment: HF_HOME and HF_HUB_OFFLINE=1."""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    command = [Path(sys.executable).with_name("nvila"), *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two fresh interpreters (~12 s); `make test-slow` and CI run it
def test_the_command_line_takes_a_hub_id_offline(hf_home, tmp_path):
    noise_image(64, 64).save(tmp_path / "a.png")
    args = ["--image", str(tmp_path / "a.png"), "--prompt", "Q?", "--max-new-tokens", "2"]
    done = nvila_command(hf_home, "generate", "--model", REPO, *args)
    assert done.returncode == 0, done.stderr
    missing = nvila_command(hf_home, "generate", "--model", "nvila-test/missing", *args)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("nvila generate: error: nvila-test/missing is neither a local folder nor in")


# ---- transformers' entry points: AutoModelForImageTextToText / AutoProcessor.from_pretrained --------------------
def test_the_auto_classes_load_a_hub_id_and_its_revisions_from_the_cache(hf_home, official, monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    # HF_HUB_OFFLINE=1, as read at import: the Auto classes look for a PEFT adapter of the id without passing on
    # `local_files_only` (transformers 5.25), so offline use needs the environment variable (the CLI test sets it)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    hub = {"cache_dir": hf_home / "hub", "local_files_only": True}
    for revision, preset in ((None, "tiny"), ("v2", "tiny-lite")):
        model = AutoModelForImageTextToText.from_pretrained(REPO, revision=revision, dtype=torch.float32, **hub)
        processor = AutoProcessor.from_pretrained(REPO, revision=revision, **hub)
        reference, reference_processor = nvila.load(official[preset])
        assert same_weights(model, reference) and model.nvila_config.name == "tiny"
        assert processor.tokenizer.get_vocab() == reference_processor.tokenizer.get_vocab()
    # (the Auto classes read config.json themselves first: a missing id is transformers' own OSError there)
    with pytest.raises(CheckpointError, match=r"nvila-test/missing is neither a local folder nor in the"):
        nvila.NVILAForConditionalGeneration.from_pretrained("nvila-test/missing", **hub)


def test_dtype_auto_is_the_checkpoints_and_an_unknown_argument_is_named(official):
    model = nvila.NVILAForConditionalGeneration.from_pretrained(official["tiny"])  # saved in bf16
    assert model.dtype == torch.bfloat16
    with pytest.raises(TypeError, match="from_pretrained does not take quantization_config"):
        nvila.NVILAForConditionalGeneration.from_pretrained(official["tiny"], quantization_config={"bits": 4})


@pytest.mark.parametrize(
    "device_map",
    [
        "cpu",
        {"": "cpu"},
        "auto",
        {"vision_tower": "cpu", "mm_projector": "cpu", "llm.model": "cpu", "llm.lm_head": "cpu"},
    ],
)
def test_a_device_map_places_the_model_and_it_still_answers_the_same(official, device_map):
    reference, processor = nvila.load(official["tiny"])
    model = nvila.NVILAForConditionalGeneration.from_pretrained(
        official["tiny"], dtype=torch.float32, device_map=device_map
    )
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert set(model.hf_device_map.values()) == {"cpu"}  # "auto" here: no GPU, everything on the CPU
    if isinstance(device_map, dict):
        assert model.hf_device_map == device_map
    inputs = processor(text="What is it?", images=[noise_image(80, 60)])
    expected = reference.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(model.generate(**inputs, max_new_tokens=4, do_sample=False), expected)


def test_attn_implementation_reaches_the_tower_and_the_llm(official):
    model = nvila.NVILAForConditionalGeneration.from_pretrained(official["tiny"], attn_implementation="eager")
    assert model.llm.config._attn_implementation == "eager"
    assert model.vision_tower.model.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="no_such_attention"):
        nvila.NVILAForConditionalGeneration.from_pretrained(official["tiny"], attn_implementation="no_such_attention")


def test_save_pretrained_writes_a_folder_that_loads_back_the_same(tmp_path, official):
    model, processor = nvila.load(official["tiny-lite"])
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file() and (tmp_path / "saved" / "modeling_nvila.py").is_file()
    again = nvila.NVILALiteForConditionalGeneration.from_pretrained(tmp_path / "saved", dtype=torch.float32)
    again_processor = nvila.NVILAProcessor.from_pretrained(tmp_path / "saved")
    assert again.nvila_config == model.nvila_config.replace(name="saved") and same_weights(again, model)
    image = noise_image(300, 160)
    inputs, reloaded_inputs = processor(text="Q?", images=[image]), again_processor(text="Q?", images=[image])
    assert torch.equal(inputs["input_ids"], reloaded_inputs["input_ids"])
    assert torch.equal(again.generate(**inputs, max_new_tokens=4), model.generate(**inputs, max_new_tokens=4))


def test_a_loaded_model_generates_until_its_end_of_turn_token(official):
    model, processor = nvila.load(official["tiny"])
    assert model.generation_config.eos_token_id == processor.eos_token_ids
    inputs = processor(text="Q?")
    first = int(model.generate(**inputs, max_new_tokens=1)[0, -1])
    model.generation_config.eos_token_id = [first]  # the first answer token now ends the answer
    assert model.generate(**inputs, max_new_tokens=5).shape[1] == inputs["input_ids"].shape[1] + 1


@pytest.mark.parametrize("device_map", ["gpu-please", {"vision_tower": "cpu", "llm": "no-such-device"}])
def test_a_device_map_that_names_no_device_is_a_config_error(official, device_map):
    with pytest.raises(ConfigError, match="is neither a device, a dict of module -> device, nor one of 'auto'"):
        nvila.NVILAForConditionalGeneration.from_pretrained(official["tiny"], device_map=device_map)


def test_save_pretrained_refuses_push_to_hub_and_writes_nothing(tmp_path, official):
    model, processor = nvila.load(official["tiny"])
    for thing in (model, processor):
        with pytest.raises(ValueError, match="upload the folder with `hf upload`"):
            thing.save_pretrained(tmp_path / "out", push_to_hub=True)
    assert not (tmp_path / "out").exists()
