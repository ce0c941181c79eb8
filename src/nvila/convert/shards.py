"""Moving tensors between safetensors files unchanged: header reading, shard planning and writing.

Owns: `TensorRef` (where a tensor is and the name it gets), `tensor_sizes` (names and byte sizes from a
file's header, no data read), `write_tensors` (one `model.safetensors`, or `model-0000i-of-0000n.safetensors`
shards plus `model.safetensors.index.json` above a size limit). Tensors are copied byte for byte: same dtype,
same values; at most one shard's tensors are in memory at a time.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from nvila.errors import CheckpointError

#: transformers' default `max_shard_size` (decimal gigabytes).
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9
INDEX_NAME = "model.safetensors.index.json"
#: A larger header is not a safetensors file (the format allows 100 MB).
MAX_HEADER_BYTES = 100 * 10**6


@dataclass(frozen=True)
class TensorRef:
    """One tensor to copy: its name in the output, the file it is in, its name there, its size in bytes."""

    name: str
    file: Path
    key: str
    nbytes: int


def tensor_sizes(file: Path) -> dict[str, int]:
    """Tensor name -> size in bytes, read from a safetensors file's header (8-byte length + JSON)."""
    try:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header of {length:,} bytes")
            header: dict[str, Any] = json.loads(f.read(length))
        return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"cannot read {file}: not a safetensors file ({e})") from None


def plan_shards(refs: Sequence[TensorRef], max_bytes: int) -> list[list[TensorRef]]:
    """Split `refs`, in order, into shards of at most `max_bytes` (a larger tensor gets a shard of its own)."""
    shards: list[list[TensorRef]] = [[]]
    size = 0
    for ref in refs:
        if shards[-1] and size + ref.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(ref)
        size += ref.nbytes
    return shards


def write_tensors(refs: Sequence[TensorRef], folder: Path, max_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> int:
    """Write `refs` into `folder` as one file or shards with an index; returns the number of files."""
    shards = plan_shards(refs, max_bytes)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    total = sum(r.nbytes for r in refs)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"writing {folder.name}", disable=None) as bar:
        for shard, name in zip(shards, names):
            save_file(_read(shard), str(folder / name), metadata={"format": "pt"})
            bar.update(sum(r.nbytes for r in shard))
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": total},
            "weight_map": {r.name: name for shard, name in zip(shards, names) for r in shard},
        }
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True))
    return len(shards)


def _read(shard: Sequence[TensorRef]) -> dict:
    tensors = {}
    with contextlib.ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for ref in shard:
            try:
                if ref.file not in handles:
                    handles[ref.file] = stack.enter_context(safe_open(str(ref.file), framework="pt"))
                tensors[ref.name] = handles[ref.file].get_tensor(ref.key)
            except Exception as e:  # safetensors raises its own error types for corrupt data
                raise CheckpointError(f"cannot read {ref.key!r} from {ref.file}: {e}") from None
    return tensors
