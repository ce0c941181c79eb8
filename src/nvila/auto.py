"""NVILA in transformers' Auto classes: `AutoConfig`, `AutoModel`, `AutoModelForImageTextToText`, `AutoProcessor`.

`import nvila` calls `register_when_imported()`, which keeps `import nvila` free of torch: the Auto classes get the
NVILA classes as soon as transformers has loaded one of their modules (at once, when it already has), through an
import hook on transformers' and nvila's modules that registers when the outermost import of them completes
(registering imports both, which need their own imports complete) and then steps aside. Model types: `nvila`,
`nvila_lite` (the `-hf` layout) and `llava_llama` (the official layout's top `config.json`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from types import ModuleType
from typing import Any

log = logging.getLogger("nvila")


def register() -> None:
    """Register the NVILA config, model and processor classes with transformers' Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    from nvila.models.nvila.configuration_pretrained import CONFIG_CLASSES
    from nvila.models.nvila.modeling_nvila import MODEL_CLASSES
    from nvila.models.nvila.processing_nvila import NVILAProcessor

    for model_type, config_class in CONFIG_CLASSES.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoProcessor.register(config_class, NVILAProcessor, exist_ok=True)
        for auto in (AutoModel, AutoModelForImageTextToText):
            auto.register(config_class, MODEL_CLASSES[model_type], exist_ok=True)


#: transformers' modules of the Auto classes: the first of them to finish loading triggers `register`.
AUTO_MODULES = (
    "transformers.models.auto.configuration_auto",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.processing_auto",
)
#: Packages whose modules the hook watches: registering imports modules of both, so it waits until none of them is
#: half-loaded (e.g. `nvila.models.nvila.configuration_pretrained` importing transformers' configs).
WATCHED_PACKAGES = ("transformers", "nvila")
_state = {"loading": 0, "registered": False}


def _register_once() -> None:
    """`register`, once; a failure is a warning, so an application's own transformers imports never break on it."""
    if not _state["registered"]:
        _state["registered"] = True  # first: `register` itself imports the other Auto modules
        try:
            register()
        except Exception as error:  # e.g. an incompatible transformers: nvila's own API still works
            log.warning("nvila: could not register NVILA with transformers' Auto classes (%s)", error)


class _RegisterAfterLoading(importlib.abc.Loader):
    """Loads a module with its own loader, then registers NVILA (once)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _state["loading"] += 1
        try:
            self.loader.exec_module(module)
        finally:
            _state["loading"] -= 1
        if not _state["loading"] and any(name in sys.modules for name in AUTO_MODULES):
            _register_once()  # only once no transformers module is half-loaded: registering imports many of them

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, resource readers...
        return getattr(self.loader, name)


class _AutoModuleFinder(importlib.abc.MetaPathFinder):
    """Finds transformers' and nvila's modules as the finders after it do, with a loader that counts the ones being
    loaded, so NVILA is registered when the outermost of them is complete and an Auto module is among those loaded."""

    def find_spec(
        self, name: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if _state["registered"] or name.partition(".")[0] not in WATCHED_PACKAGES:
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1 :]:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisterAfterLoading(spec.loader)
                return spec
        return None


def register_when_imported() -> None:
    """Register now if transformers' Auto classes are loaded, else as soon as one of them loads."""
    if any(name in sys.modules for name in AUTO_MODULES):
        _register_once()
    elif not any(isinstance(f, _AutoModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AutoModuleFinder())
