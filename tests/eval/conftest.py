import pytest

from nvila.checkpoint import save
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import from_name


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A tiny saved model for the lmms-eval tests: one 64 px tile per image (resize), 2 frames per video."""
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 64, "patch_size": 16}  # fmt: skip
    cfg = from_name("tiny").replace(vision=vision, image_aspect_ratio="resize", num_video_frames=2)
    model, processor = random_pretrained(cfg, seed=3)
    return save(model, processor.tokenizer, tmp_path_factory.mktemp("ckpt") / "tiny-lmms")
