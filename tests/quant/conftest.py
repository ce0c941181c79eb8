"""A tiny float checkpoint (56 px tiles, GQA LLM 32 wide) and its quantized copy, each made once per session.

The random LM head is scaled up so that next-token distributions are sharp, as a trained model's are: a
random tiny model predicts nearly uniformly, and any two such models are within a small KL of each other.
Sharpened, the quantized copy measures KL ~0.006 from its float model, a different random model ~9.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nvila.checkpoint import save
from nvila.factory import random_pretrained
from nvila.quant.job import QuantizeSettings, quantize

from ..finetune.conftest import tiny_config

#: The tiny LLM is 32 / 64 wide, so int4 groups of 32 (128 does not divide 32).
GROUP_SIZE = 32


@pytest.fixture(scope="session")
def float_checkpoint(tmp_path_factory) -> Path:
    model, processor = random_pretrained(tiny_config(), seed=3)
    with torch.no_grad():
        model.llm.lm_head.weight.mul_(30)
    return save(model, processor.tokenizer, tmp_path_factory.mktemp("float") / "model")


@pytest.fixture(scope="session")
def quantized(float_checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    """(folder, report) of the tiny model quantized with W8A8 tower and W4A16 AWQ LLM on synthetic calibration."""
    out = tmp_path_factory.mktemp("quantized") / "model-q"
    settings = QuantizeSettings(
        out=str(out), model=str(float_checkpoint), group_size=GROUP_SIZE, calib_samples=3, heldout_samples=2,
        device="cpu",
    )  # fmt: skip
    return out, quantize(settings)
