"""`NVILAPretrainedConfig`: the transformers config reads the released `config.json` files and the typed config
round-trips through it."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, Qwen2Config, SiglipVisionConfig

from nvila.checkpoint import config_from_official
from nvila.models.nvila.configuration_nvila import PRESETS, from_name
from nvila.models.nvila.configuration_pretrained import (
    NVILALitePretrainedConfig,
    NVILAOfficialPretrainedConfig,
    NVILAPretrainedConfig,
)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_round_trips_through_the_transformers_config(preset):
    cfg = from_name(preset)
    pretrained = NVILAPretrainedConfig.from_nvila(cfg)
    lite = cfg.projector_type == "mlp_downsample_3x3_fix"
    assert type(pretrained) is (NVILALitePretrainedConfig if lite else NVILAPretrainedConfig)
    assert isinstance(pretrained.vision_config, SiglipVisionConfig) and isinstance(pretrained.text_config, Qwen2Config)
    assert pretrained.get_text_config() is pretrained.text_config  # what generate() sizes its cache from
    assert pretrained.to_nvila() == cfg


def test_the_defaults_are_the_released_8b_models():
    assert NVILAPretrainedConfig().to_nvila() == from_name("nvila-8b").replace(name="custom")
    assert NVILALitePretrainedConfig().to_nvila() == from_name("nvila-lite-8b").replace(name="custom")


def test_autoconfig_reads_a_saved_config_and_both_checkpoint_layouts(tmp_path, official, hf):
    pretrained = NVILAPretrainedConfig.from_nvila(from_name("tiny-lite"))
    pretrained.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "nvila_lite"
    assert AutoConfig.from_pretrained(tmp_path).to_nvila() == from_name("tiny-lite").replace(name=tmp_path.name)
    for name in ("tiny", "tiny-lite"):
        expected = config_from_official(official[name])
        from_official = AutoConfig.from_pretrained(official[name])  # its top config.json: llava_llama, parts nested
        assert isinstance(from_official, NVILAOfficialPretrainedConfig)
        from_hf = AutoConfig.from_pretrained(hf[name])
        assert from_hf.model_type == ("nvila_lite" if name == "tiny-lite" else "nvila")
        # the token ids are the tokenizer's (the loader reads them from it); everything else is the config files'
        for got in (from_official.to_nvila(), from_hf.to_nvila()):
            assert got.replace(image_token_id=None, video_token_id=None) == expected.replace(
                image_token_id=None, video_token_id=None
            )
