"""nvila: NVILA vision-language models (arXiv 2412.04468) in plain PyTorch + transformers.

Public names are imported lazily, so light commands (`nvila tokens`) start without torch.
"""

from __future__ import annotations

from nvila.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "load": "nvila.checkpoint",
    "save": "nvila.checkpoint",
    "build_model": "nvila.checkpoint",
    "NVILAConfig": "nvila.config",
    "TextConfig": "nvila.config",
    "VisionConfig": "nvila.config",
    "from_name": "nvila.config",
    "NVILAError": "nvila.errors",
    "CheckpointError": "nvila.errors",
    "ConfigError": "nvila.errors",
    "MediaError": "nvila.errors",
    "PromptError": "nvila.errors",
    "random_pretrained": "nvila.factory",
    "GenerationOptions": "nvila.generation",
    "NVILAForConditionalGeneration": "nvila.model",
    "NVILAPipeline": "nvila.pipeline",
    "NVILAProcessor": "nvila.processing",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
