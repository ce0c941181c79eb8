"""Dependencies point one way (docs/architecture.md, "Dependency direction"): every `import` in the package,
function-level ones included, is read from the source and checked against the layer of its module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nvila"

#: Layers from the bottom; a module may import its own layer and the ones below, never one above. A module's layer
#: is that of the longest entry its dotted name starts with (`models.nvila.processing_nvila`, then `models.nvila`).
NVILA = "models.nvila."
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"errors", "lazy", "json_io", "atomic", "argtypes", "assets", "prompt", "models",
                    NVILA + "configuration_nvila", NVILA + "configuration_pretrained", NVILA + "geometry"}),
    ("ops and model", {"ops", "generation", "temporal", "models.nvila", NVILA + "vision_tower", NVILA + "dynamic_s2",
                       NVILA + "projector", NVILA + "modeling_nvila"}),
    ("media, text and files", {"image_io", "video_io", NVILA + "image_processing_nvila", NVILA + "tokenization_nvila",
                               NVILA + "processing_nvila", "checkpoint"}),
    ("model sources", {"convert", "hub", "loader", "factory", "pipeline", "auto"}),
    ("jobs", {"data", "train", "finetune", "prune", "quant", "engine", "serve", "eval", "bench", "synth"}),
    ("command line", {"cli", "__init__"}),
]  # fmt: skip
#: The imports allowed against the layers, each with its reason.
UPWARD_ALLOWED = {
    # transformers' convention: loading is a classmethod of the model and processor classes (`AutoModel` calls it)
    ("nvila.models.nvila.modeling_nvila", "nvila.loader"),
    ("nvila.models.nvila.processing_nvila", "nvila.loader"),
    # ... and so is saving (`save_pretrained`)
    ("nvila.models.nvila.modeling_nvila", "nvila.convert.save_pretrained"),
    ("nvila.models.nvila.processing_nvila", "nvila.convert.save_pretrained"),
}
LAYER_OF = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def layer(module: str) -> int | None:
    """The layer of `nvila.<name>` (None for a name outside the table, e.g. a package attribute)."""
    name = module.removeprefix("nvila.") if module != "nvila" else "__init__"
    while name:
        if name in LAYER_OF:
            return LAYER_OF[name]
        name = name.rpartition(".")[0]
    return None


def imports_of(source: str) -> set[str]:
    """The nvila modules a source imports (the package uses absolute imports only: a relative one fails here)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("nvila")}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r}: write it absolute"
            if (node.module or "").startswith("nvila"):
                found |= {f"nvila.{a.name}" if node.module == "nvila" else node.module for a in node.names}
    return found


def upward_imports(module: str, source: str) -> list[str]:
    own = layer(module)
    upward = (t for t in imports_of(source) if layer(t) is not None and layer(t) > own)
    return sorted(t for t in upward if (module, t) not in UPWARD_ALLOWED)


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def test_every_package_module_has_a_layer():
    assert [m for m, _ in modules() if layer(m) is None] == []


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_imports_point_down(module, path):
    upward = upward_imports(module, path.read_text(encoding="utf-8"))
    assert not upward, f"{module} ({LAYERS[layer(module)][0]}) imports a higher layer: {upward}"


def test_an_import_against_the_layers_is_found_also_inside_a_function():
    source = "import torch\nfrom nvila.errors import ConfigError\n\ndef f():\n    from nvila.quant.awq import x\n"
    assert upward_imports("nvila.checkpoint", source) == ["nvila.quant.awq"]
    assert upward_imports("nvila.models.nvila.modeling_nvila", "import nvila.cli") == ["nvila.cli"]
    assert upward_imports("nvila.train.trainer", "from nvila import checkpoint") == []
    processing = "from nvila.image_io import load_image\nfrom nvila.pipeline import NVILAPipeline"
    assert upward_imports("nvila.models.nvila.processing_nvila", processing) == ["nvila.pipeline"]
    assert upward_imports("nvila.models.nvila.geometry", "from nvila.loader import load") == ["nvila.loader"]
