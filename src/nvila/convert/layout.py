"""Which layout a folder holds, the checks on a conversion's input and output, the conversion record.

The record (`nvila_conversion.json` in the HF folder) holds what the HF layout changes and the way back needs to
restore the official folder exactly: config keys added or replaced, the names of `llm/`'s tokenizer files and
the original text of the two that are rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvila.checkpoint import PARTS, is_hf_layout
from nvila.errors import CheckpointError
from nvila.json_io import read_json

RECORD_NAME = "nvila_conversion.json"
RECORD_FORMAT = 1
PREPROCESSOR_CONFIG = "preprocessor_config.json"  #: in vision_tower/ (official) or at the top (HF)
PROCESSOR_CONFIG = "processor_config.json"  #: HF only: the AutoProcessor's auto_map


@dataclass
class Converted:
    """What a conversion wrote."""

    path: Path
    model_type: str  #: "nvila" or "nvila_lite"
    files: int  #: safetensors files
    nbytes: int  #: tensor bytes
    notes: list[str] = field(default_factory=list)  #: where SGLang would not run the model as it expects


def layout_of(root: Path) -> str | None:
    """ "official", "hf", or None for a folder that is neither."""
    if (root / "config.json").is_file() and all((root / part).is_dir() for part in PARTS):
        return "official"
    return "hf" if is_hf_layout(root) else None


def check_paths(src: Path, out: Path, overwrite: bool, wanted: str) -> None:
    """Refuse a missing source, a source not in layout `wanted`, an output that exists (without `overwrite`) or
    that contains the source or lies inside it."""
    if not src.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {src}")
    layout = layout_of(src)
    if layout != wanted:
        if layout is not None:
            other = "official" if layout == "hf" else "hf"
            raise CheckpointError(f"{src} is already in the {layout} layout; to convert it use --to {other}")
        raise CheckpointError(
            f"{src} is neither an official NVILA checkpoint (config.json with llm/, vision_tower/, mm_projector/) "
            "nor an HF one (config.json with text_config and vision_config)"
        )
    a, b = src.resolve(), out.resolve()
    if a == b or a.is_relative_to(b) or b.is_relative_to(a):
        raise CheckpointError(f"the output {out} must not be the checkpoint folder, lie inside it or contain it")
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out} already exists; pass --overwrite to replace it")


def read_record(root: Path) -> dict[str, Any] | None:
    """The conversion record of an HF folder written by `nvila convert`, or None for one written elsewhere."""
    path = root / RECORD_NAME
    if not path.is_file():
        return None
    record = read_json(path, CheckpointError)
    expected = {"config": ("added", "replaced"), "tokenizer": ("llm_files", "originals")}
    if (
        not isinstance(record, dict)
        or record.get("format") != RECORD_FORMAT
        or not all(isinstance(record.get(k), dict) and all(f in record[k] for f in fs) for k, fs in expected.items())
    ):
        raise CheckpointError(
            f"{path} is not a conversion record of format {RECORD_FORMAT}; remove it to convert anyway"
        )
    return record


def write_record(root: Path, config: dict[str, Any], tokenizer: dict[str, Any]) -> None:
    record = {"format": RECORD_FORMAT, "written_by": "nvila convert --to hf", "config": config, "tokenizer": tokenizer}
    (root / RECORD_NAME).write_text(json.dumps(record, indent=2))
