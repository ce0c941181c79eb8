"""Fixtures for the engine tests: a small random model with 64 px tiles (16 visual tokens per tile, so images
and videos cost little), its pipeline (the reference: each request run alone) and engines over it."""

from __future__ import annotations

import pytest

from nvila.engine.config import EngineConfig
from nvila.engine.core import InferenceEngine
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import NVILAConfig, TextConfig, VisionConfig
from nvila.pipeline import NVILAPipeline


def small_config(**changes) -> NVILAConfig:
    """Dynamic-S2 at 64/128/192 px, patch 8, 2x2 projector; a GQA decoder (4 query / 2 KV heads)."""
    vision = VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=8
    )
    text = TextConfig(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        model_max_length=1024,
    )
    return NVILAConfig(name="engine-test", vision=vision, text=text, s2_scales=(64, 128, 192), **changes)


@pytest.fixture(scope="session")
def small():
    """(model, processor): float32, random weights; videos pool 2 frames per group."""
    return random_pretrained(small_config(video_pool_size=2), seed=1)


@pytest.fixture(scope="session")
def small_pipeline(small) -> NVILAPipeline:
    return NVILAPipeline(*small)


@pytest.fixture
def make_engine(small):
    """Factory: an InferenceEngine over the small model (closed after the test)."""
    engines = []

    def make(**config) -> InferenceEngine:
        engine = InferenceEngine.from_model(*small, EngineConfig(**config))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
