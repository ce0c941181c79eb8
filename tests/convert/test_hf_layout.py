"""The HF folder has what SGLang's NVILA / NVILA-Lite code reads: config fields, weight names and shapes of
the modules it builds, a tokenizer with media tokens and a chat template that renders media parts."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

import nvila
from nvila.models.nvila.tokenization_nvila import format_chat
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN

EXPECTED = {
    "tiny": ("nvila", "NVILAForConditionalGeneration", "processing_nvila.NVILAProcessor"),
    "tiny-lite": ("nvila_lite", "NVILALiteForConditionalGeneration", "processing_nvila.NVILAProcessor"),
}


def stored(folder) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def sglang_projector(name: str, config: dict) -> nn.Sequential:
    """The projector as SGLang builds it (models/nvila.py, nvila_lite.py), sized from this config."""
    c, h = config["vision_config"]["hidden_size"], config["text_config"]["hidden_size"]
    if name == "tiny":  # Dynamic-S2: 3 scales concatenated, then 2x2
        return nn.Sequential(nn.Identity(), nn.LayerNorm(12 * c), nn.Linear(12 * c, h), nn.GELU(), nn.Linear(h, h))
    return nn.Sequential(
        nn.Identity(), nn.LayerNorm(9 * c), nn.Linear(9 * c, 3 * c), nn.GELU(), nn.LayerNorm(3 * c),
        nn.Linear(3 * c, h), nn.GELU(), nn.Linear(h, h),
    )  # fmt: skip


@pytest.mark.parametrize("name", ["tiny", "tiny-lite"])
def test_config_fields_sglang_reads(hf, official, name):
    config = json.loads((hf[name] / "config.json").read_text())
    model_type, architecture, processor = EXPECTED[name]
    assert config["model_type"] == model_type and config["architectures"] == [architecture]
    assert config["auto_map"]["AutoConfig"].startswith("configuration_")
    text, vision = Qwen2Config(**config["text_config"]), SiglipVisionConfig(**config["vision_config"])
    assert (text.hidden_size, text.num_hidden_layers, text.num_key_value_heads) == (32, 2, 2)
    assert (vision.hidden_size, vision.image_size, vision.patch_size) == (32, 112, 14)
    tokenizer = nvila.load(official[name])[1].tokenizer
    assert config["image_token_id"] == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert config["video_token_id"] == tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    processor_config = json.loads((hf[name] / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == processor
    assert json.loads((hf[name] / "preprocessor_config.json").read_text())["image_processor_type"] == (
        "SiglipImageProcessor"
    )


@pytest.mark.parametrize("name", ["tiny", "tiny-lite"])
def test_weight_names_and_shapes_match_the_modules_sglang_builds(hf, name):
    config = json.loads((hf[name] / "config.json").read_text())
    weights = stored(hf[name])
    expected = {}
    llm = Qwen2ForCausalLM(Qwen2Config(**config["text_config"]))
    expected.update({f"llm.{k}": v.shape for k, v in llm.state_dict().items()})
    # transformers 4.x (SGLang's) keeps SiglipVisionModel's weights under `vision_model.`; 5.x does not
    tower = SiglipVisionModel(SiglipVisionConfig(**config["vision_config"]))
    expected.update({f"vision_tower.vision_model.{k}": v.shape for k, v in tower.state_dict().items()})
    projector = sglang_projector(name, config)
    expected.update({f"mm_projector.layers.{k}": v.shape for k, v in projector.state_dict().items()})
    assert {k: v.shape for k, v in weights.items()} == expected
    assert all(t.dtype == torch.bfloat16 for t in weights.values())


def test_tokenizer_names_media_tokens_and_renders_media_parts(hf):
    tokenizer = AutoTokenizer.from_pretrained(str(hf["tiny"]), local_files_only=True)
    assert (tokenizer.image_token, tokenizer.video_token) == (IMAGE_TOKEN, VIDEO_TOKEN)
    assert tokenizer.image_token_id == json.loads((hf["tiny"] / "config.json").read_text())["image_token_id"]
    text = [{"role": "user", "content": "What is here?"}, {"role": "assistant", "content": "A cat."}]
    assert tokenizer.apply_chat_template(text, tokenize=False, add_generation_prompt=True) == format_chat(text)
    parts = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Compare."}]},
    ]
    rendered = tokenizer.apply_chat_template(parts, tokenize=False, add_generation_prompt=True)
    flat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image><vila/video>Compare."}]
    assert rendered == format_chat(flat)


def test_an_hf_folder_loads_directly_as_the_official_folder_does(hf, official):
    """No convert step: the same configuration, tokenizer and weights, so the same logits."""
    for name in ("tiny", "tiny-lite"):
        from_hf, hf_processor = nvila.load(hf[name])
        from_official, processor = nvila.load(official[name])
        assert from_hf.nvila_config == from_official.nvila_config
        assert hf_processor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
        hf_state, state = from_hf.state_dict(), from_official.state_dict()
        assert hf_state.keys() == state.keys() and all(torch.equal(hf_state[k], state[k]) for k in state)
