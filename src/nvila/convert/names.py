"""Tensor names between the official layout (one folder per part) and the HF layout (one folder).

The HF name is the part's folder name, a dot, and the official name (SGLang's `NVILAForConditionalGeneration`
has the attributes `llm`, `vision_tower`, `mm_projector`, and transformers 4.x's `SiglipVisionModel` keeps its
weights under `vision_model.`):

| part folder | official name | HF name |
|---|---|---|
| `llm/` | `model.norm.weight`, `lm_head.weight` | `llm.model.norm.weight`, `llm.lm_head.weight` |
| `vision_tower/` | `vision_model.post_layernorm.weight` | `vision_tower.vision_model.post_layernorm.weight` |
| `mm_projector/` | `layers.1.weight` (`nn.Sequential` index) | `mm_projector.layers.1.weight` |
"""

from __future__ import annotations

from nvila.errors import CheckpointError

#: Part folder -> how its official names begin ("" = any name).
OFFICIAL_PREFIXES = {"llm": "", "vision_tower": "vision_model.", "mm_projector": "layers."}


def hf_name(part: str, name: str) -> str:
    """`mm_projector`, `layers.1.weight` -> `mm_projector.layers.1.weight`."""
    if not name.startswith(OFFICIAL_PREFIXES[part]):
        raise CheckpointError(f"tensor {name!r} in {part}/ does not start with {OFFICIAL_PREFIXES[part]!r}")
    return f"{part}.{name}"


def official_name(name: str) -> tuple[str, str] | None:
    """`mm_projector.layers.1.weight` -> (`mm_projector`, `layers.1.weight`); None for a name of no part."""
    for part, prefix in OFFICIAL_PREFIXES.items():
        if name.startswith(f"{part}.{prefix}"):
            return part, name[len(part) + 1 :]
    return None
