"""nvila: NVILA vision-language models (arXiv 2412.04468) in plain PyTorch + transformers."""

from nvila.checkpoint import build_model, load, save
from nvila.config import NVILAConfig, TextConfig, VisionConfig, from_name
from nvila.errors import CheckpointError, ConfigError, MediaError, NVILAError, PromptError
from nvila.generation import GenerationOptions
from nvila.model import NVILAForConditionalGeneration
from nvila.processing import NVILAProcessor

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "GenerationOptions",
    "MediaError",
    "NVILAConfig",
    "NVILAError",
    "NVILAForConditionalGeneration",
    "NVILAProcessor",
    "PromptError",
    "TextConfig",
    "VisionConfig",
    "build_model",
    "from_name",
    "load",
    "save",
]
