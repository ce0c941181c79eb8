"""Dependencies point one way (docs/architecture.md, "Dependency direction"): every `import` in the package,
function-level ones included, is read from the source and checked against the layer of its module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nvila"

#: Layers from the bottom; a module may import its own layer and the ones below, never one above.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"errors", "lazy", "json_io", "atomic", "argtypes", "assets", "prompt", "config", "geometry"}),
    ("ops and model", {"ops", "vision", "projector", "generation", "model", "temporal"}),
    ("media, text and files", {"image_io", "video_io", "image_processing", "tokenizer", "processing", "checkpoint"}),
    ("model sources", {"convert", "hub", "loader", "factory", "pipeline"}),
    ("jobs", {"data", "train", "finetune", "prune", "quant", "engine", "serve", "eval", "bench", "synth"}),
    ("command line", {"cli", "__init__"}),
]
LAYER_OF = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def top_name(module: str) -> str:
    """`nvila.quant.awq` -> `quant`; `nvila` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


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
    own = LAYER_OF[top_name(module)]
    return sorted(t for t in imports_of(source) if top_name(t) in LAYER_OF and LAYER_OF[top_name(t)] > own)


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def test_every_package_module_has_a_layer():
    assert {top_name(m) for m, _ in modules()} - set(LAYER_OF) == set()


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_imports_point_down(module, path):
    upward = upward_imports(module, path.read_text(encoding="utf-8"))
    assert not upward, f"{module} ({LAYERS[LAYER_OF[top_name(module)]][0]}) imports a higher layer: {upward}"


def test_an_import_against_the_layers_is_found_also_inside_a_function():
    source = "import torch\nfrom nvila.config import NVILAConfig\n\ndef f():\n    from nvila.quant.awq import x\n"
    assert upward_imports("nvila.checkpoint", source) == ["nvila.quant.awq"]
    assert upward_imports("nvila.model", "import nvila.cli") == ["nvila.cli"]
    assert upward_imports("nvila.train.trainer", "from nvila import checkpoint") == []
