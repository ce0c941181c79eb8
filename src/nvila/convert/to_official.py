"""The single-folder HF layout -> the official layout (`nvila convert --to official`).

With the conversion record `to_hf` leaves, the result equals the folder that was converted: the same tensors
(bit for bit, possibly sharded differently), the same configs and tokenizer files. An HF folder without it
(released by NVIDIA) gets the official geometry keys it lacks from the preset of its model type (see
`configs.PRESET_OF_MODEL_TYPE`); `nvila.load` then checks every tensor against them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nvila.atomic import atomic_folder
from nvila.checkpoint import PARTS, config_from_official, read_json
from nvila.convert.configs import official_configs
from nvila.convert.hf_files import hf_tensors
from nvila.convert.layout import PREPROCESSOR_CONFIG, Converted, check_paths, read_record
from nvila.convert.shards import DEFAULT_MAX_SHARD_BYTES, write_tensors
from nvila.convert.tokenizer_files import write_official_tokenizer
from nvila.models.nvila.tokenization_nvila import load_tokenizer


def to_official(
    src: str | Path, out: str | Path, *, overwrite: bool = False, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
) -> Converted:
    """Convert the HF folder `src` into the official checkpoint `out` (see the module docstring)."""
    src, out = Path(src), Path(out)
    check_paths(src, out, overwrite, "hf")
    record = read_record(src)
    hf = read_json(src / "config.json")
    top, llm, tower, projector = official_configs(hf, record and record["config"], out.name)
    part_configs = {"llm": llm, "vision_tower": tower, "mm_projector": projector}
    parts = hf_tensors(src)
    files = 0
    with atomic_folder(out) as tmp:
        for part in PARTS:
            (tmp / part).mkdir()
            (tmp / part / "config.json").write_text(json.dumps(part_configs[part], indent=2))
            files += write_tensors(parts[part], tmp / part, max_shard_bytes)
        if (src / PREPROCESSOR_CONFIG).is_file():
            shutil.copy2(src / PREPROCESSOR_CONFIG, tmp / "vision_tower" / PREPROCESSOR_CONFIG)
        (tmp / "config.json").write_text(json.dumps(top, indent=2))
        write_official_tokenizer(src, tmp / "llm", record and record["tokenizer"])
        config_from_official(tmp)  # the result must read back, else nothing is written
        load_tokenizer(tmp / "llm")
    nbytes = sum(r.nbytes for refs in parts.values() for r in refs)
    return Converted(out, hf["model_type"], files, nbytes)
