"""Reading a single-folder HF checkpoint (`nvila convert --to hf`, NVIDIA's `-hf` releases) in place: the official
configs it stands for, and where each tensor of the module is, so `nvila.load` needs no conversion step.

With the conversion record `to_hf` leaves, the configs are exactly the official folder's; without it (a folder
released by NVIDIA) the official keys it lacks come from the preset of its model type
(`configs.PRESET_OF_MODEL_TYPE`), and loading checks every tensor against them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nvila.checkpoint import (
    PARTS,
    CheckpointFiles,
    describe_names,
    official_to_local,
    read_json,
    safetensors_files,
)
from nvila.convert.configs import official_configs
from nvila.convert.layout import PREPROCESSOR_CONFIG, read_record
from nvila.convert.names import official_name
from nvila.convert.shards import TensorRef, tensor_sizes
from nvila.errors import CheckpointError


def hf_tensors(root: Path) -> dict[str, list[TensorRef]]:
    """The tensors of an HF folder by official part, under their official names."""
    parts: dict[str, list[TensorRef]] = {part: [] for part in PARTS}
    unknown = []
    for file in safetensors_files(root):
        for key, nbytes in tensor_sizes(file).items():
            located = official_name(key)
            if located is None:
                unknown.append(key)
            else:
                parts[located[0]].append(TensorRef(located[1], file, key, nbytes))
    if unknown:
        raise CheckpointError(
            f"{root} holds tensors of no NVILA part (expected names starting with llm., vision_tower.vision_model. "
            f"or mm_projector.layers.): {describe_names(sorted(unknown))}"
        )
    empty = [part for part, refs in parts.items() if not refs]
    if empty:
        raise CheckpointError(f"{root} holds no tensors of {', '.join(empty)}")
    return parts


def hf_files(root: Path) -> CheckpointFiles:
    """What `nvila.load` reads from the HF folder `root`; the tokenizer loads from the folder itself."""
    record = read_record(root)
    top, llm, tower, projector = official_configs(
        read_json(root / "config.json"), record and record["config"], root.name
    )
    pre = read_json(root / PREPROCESSOR_CONFIG) if (root / PREPROCESSOR_CONFIG).is_file() else {}

    def tensors() -> Iterator[tuple[str, Path, str]]:
        for part, refs in hf_tensors(root).items():
            for ref in refs:
                yield official_to_local(part, ref.name), ref.file, ref.key

    configs = {"top": top, "llm": llm, "vision_tower": tower, "mm_projector": projector}
    return CheckpointFiles(root, configs, pre, root, tensors)
