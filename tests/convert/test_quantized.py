"""`nvila convert --to hf` of quantized checkpoints: an AWQ LLM gets the top-level "quantization_config" SGLang
reads (tower and projector kept in float) and converts back unchanged; a W8A8 tower is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import nvila
from nvila.checkpoint import save
from nvila.factory import random_pretrained
from nvila.ops.quantized import AWQLinear
from nvila.quant.job import QuantizeSettings, quantize
from tests.convert.test_cli import fails, run
from tests.finetune.conftest import tiny_config


def quantized_checkpoint(root: Path, vision: str) -> Path:
    model, processor = random_pretrained(tiny_config(), seed=3)
    float_folder = save(model, processor.tokenizer, root / "float")
    settings = QuantizeSettings(
        out=str(root / "q"), model=str(float_folder), vision=vision, group_size=32, calib_samples=2,
        heldout_samples=1, device="cpu",
    )  # fmt: skip
    quantize(settings)
    return root / "q"


@pytest.fixture(scope="module")
def awq_only(tmp_path_factory) -> Path:
    return quantized_checkpoint(tmp_path_factory.mktemp("awq"), vision="none")


def test_an_awq_llm_gets_the_top_level_config_sglang_reads_and_converts_back(awq_only, tmp_path, capsys):
    code, _, _ = run(capsys, "--to", "hf", awq_only, tmp_path / "hf")
    assert code == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    llm_quantization = json.loads((awq_only / "llm" / "config.json").read_text())["quantization_config"]
    top = config["quantization_config"]
    assert top["quant_method"] == "awq" and top["bits"] == 4 and top["group_size"] == 32
    assert top["modules_to_not_convert"][:2] == ["vision_tower", "mm_projector"]
    assert top["modules_to_not_convert"][2:] == [f"llm.{n}" for n in llm_quantization["modules_to_not_convert"] or []]
    assert config["text_config"]["quantization_config"] == llm_quantization
    with safe_open(tmp_path / "hf" / "model.safetensors", "pt") as f:
        names = set(f.keys())
    assert "llm.model.layers.0.self_attn.q_proj.qweight" in names
    assert "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight" in names

    direct, _ = nvila.load(tmp_path / "hf")  # the HF folder loads as it is, AWQ layers included
    assert any(isinstance(m, AWQLinear) for m in direct.llm.modules())
    code, _, _ = run(capsys, "--to", "official", tmp_path / "hf", tmp_path / "back")
    assert code == 0
    for part in ("", "llm/", "vision_tower/", "mm_projector/"):
        assert json.loads((tmp_path / "back" / part / "config.json").read_text()) == json.loads(
            (awq_only / part / "config.json").read_text()
        ), part
    model, _ = nvila.load(tmp_path / "back")
    original, _ = nvila.load(awq_only)
    assert any(isinstance(m, AWQLinear) for m in model.llm.modules())
    for loaded in (model, direct):
        for (name, a), (_, b) in zip(loaded.state_dict().items(), original.state_dict().items(), strict=True):
            assert torch.equal(a, b), name


def test_a_w8a8_tower_is_refused_in_one_line_naming_the_part(tmp_path, capsys):
    both = quantized_checkpoint(tmp_path, vision="w8a8")
    capsys.readouterr()  # the quantizer's progress bars
    err = fails(capsys, "--to", "hf", both, tmp_path / "hf")
    assert "the vision tower is quantized (compressed-tensors)" in err and "--vision none" in err
    assert not (tmp_path / "hf").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
