"""A small and a large tiny model sharing one tokenizer (saved once per module), and the colour dataset."""

from __future__ import annotations

import pytest

from ..finetune.conftest import save_random, write_colour_dataset


@pytest.fixture(scope="session")
def model_pair(tmp_path_factory):
    """(large, small) checkpoint folders: different sizes and weights, the same tokenizer."""
    root = tmp_path_factory.mktemp("pair")
    large = save_random(root / "large", seed=1, hidden_size=64, intermediate_size=128)
    small = save_random(root / "small", seed=2)
    return large, small


@pytest.fixture
def colour_data(tmp_path):
    return write_colour_dataset(tmp_path / "data", n=16)
