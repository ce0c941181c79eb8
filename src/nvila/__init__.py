"""nvila: NVILA vision-language models (arXiv 2412.04468) in plain PyTorch + transformers.

Public names are imported lazily, so light commands (`nvila tokens`) start without torch.
"""

from __future__ import annotations

import logging

from nvila.auto import register_when_imported
from nvila.lazy import lazy_exports

#: Loggers that warn at import time on every run: transformers imports torchao whenever it is installed (for
#: `fp8` training), and torchao then reports the CUDA / MX kernels a CPU build cannot load, and torch's pytree
#: deprecations in torchao's code. Held at ERROR unless the application set their level (`nvila --debug` shows them).
IMPORT_NOISE = ("torchao", "torch.utils._pytree")
for _name in IMPORT_NOISE:
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.ERROR)

__version__ = "0.1.0"

register_when_imported()  # NVILA in transformers' Auto classes, once transformers loads them (nvila.auto)

_EXPORTS = {
    "load": "nvila.loader",
    "save": "nvila.checkpoint",
    "build_model": "nvila.checkpoint",
    "NVILAConfig": "nvila.models.nvila.configuration_nvila",
    "TextConfig": "nvila.models.nvila.configuration_nvila",
    "VisionConfig": "nvila.models.nvila.configuration_nvila",
    "from_name": "nvila.models.nvila.configuration_nvila",
    "NVILAError": "nvila.errors",
    "CheckpointError": "nvila.errors",
    "ConfigError": "nvila.errors",
    "MediaError": "nvila.errors",
    "PromptError": "nvila.errors",
    "random_pretrained": "nvila.factory",
    "GenerationOptions": "nvila.generation",
    "NVILAForConditionalGeneration": "nvila.models.nvila.modeling_nvila",
    "NVILALiteForConditionalGeneration": "nvila.models.nvila.modeling_nvila",
    "NVILAPretrainedConfig": "nvila.models.nvila.configuration_pretrained",
    "NVILAImageProcessor": "nvila.models.nvila.image_processing_nvila",
    "NVILAPipeline": "nvila.pipeline",
    "NVILAProcessor": "nvila.models.nvila.processing_nvila",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
