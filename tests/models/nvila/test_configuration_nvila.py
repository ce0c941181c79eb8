"""Presets carry the released sizes; configs validate and round-trip."""

from __future__ import annotations

import pytest

import nvila
from nvila.errors import ConfigError
from nvila.models.nvila.configuration_nvila import PRESETS, NVILAConfig, from_name


def test_real_presets():
    eight = from_name("nvila-8b")
    assert (eight.vision.hidden_size, eight.vision.num_hidden_layers, eight.vision.intermediate_size) == (
        1152,
        27,
        4304,
    )
    assert (eight.text.hidden_size, eight.text.num_hidden_layers, eight.text.intermediate_size) == (3584, 28, 18944)
    assert (eight.text.num_attention_heads, eight.text.num_key_value_heads) == (28, 4)
    assert (eight.image_aspect_ratio, eight.downsample, eight.num_video_frames) == ("dynamic_s2", 2, 8)
    lite = from_name("nvila-lite-8b")
    assert (lite.image_aspect_ratio, lite.downsample, lite.mm_hidden_size) == ("dynamic", 3, 1152)
    small = from_name("nvila-lite-2b")
    assert (small.text.hidden_size, small.text.tie_word_embeddings) == (1536, True)
    fifteen, lite_fifteen = from_name("nvila-15b"), from_name("nvila-lite-15b")
    assert (
        fifteen.image_aspect_ratio,
        fifteen.downsample,
        lite_fifteen.image_aspect_ratio,
        lite_fifteen.downsample,
    ) == (
        "dynamic_s2",
        2,
        "dynamic",
        3,
    )
    assert fifteen.vision == eight.vision and fifteen.text == lite_fifteen.text
    video = from_name("nvila-8b-video")
    assert (video.num_video_frames, video.video_pool_size, video.num_time_tokens) == (256, 8, 100)


# published sizes: Qwen2.5-14B 14,770,033,664, Qwen2.5-7B 7,615,616,512 and Qwen2.5-1.5B 1,543,714,304 parameters;
# SigLIP SO400M's vision transformer without its pooling head ~0.413B
@pytest.mark.parametrize(
    "preset,llm",
    [
        ("nvila-8b", 7_615_616_512),
        ("nvila-lite-8b", 7_615_616_512),
        ("nvila-lite-2b", 1_543_714_304),
        ("nvila-15b", 14_770_033_664),
        ("nvila-lite-15b", 14_770_033_664),
    ],
)
def test_full_size_presets_build_without_downloads(preset, llm):
    model, _ = nvila.random_pretrained(preset, device="meta")
    assert sum(p.numel() for p in model.llm.parameters()) == llm
    assert sum(p.numel() for p in model.vision_tower.parameters()) / 1e9 == pytest.approx(0.413, abs=0.001)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="nvila-8b"):
        from_name("nvila-9000")


def test_round_trip_and_unknown_keys():
    cfg = from_name("tiny-lite")
    assert NVILAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config keys: colour"):
        NVILAConfig.from_dict({**cfg.to_dict(), "colour": "red"})


@pytest.mark.parametrize(
    "changes",
    [
        {"projector_type": "mlp_9x9"},
        {"image_aspect_ratio": "stretch"},
        {"s2_scales": [448, 900]},
        {"max_tiles": 4},
        {"min_tiles": 0},
        {"video_pool_size": 0},
        {"fps": -1.0},
    ],
)
def test_invalid_configs(changes):
    with pytest.raises(ConfigError):
        from_name("nvila-8b").replace(**changes)


def test_every_preset_is_valid():
    for name in PRESETS:
        assert from_name(name).name == name
