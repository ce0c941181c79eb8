"""Official layout -> the single-folder HF layout SGLang serves (`nvila convert --to hf`).

Output (written under a temporary name, renamed when complete)::

    config.json                    NVILA(Lite)ForConditionalGeneration: text_config, vision_config, media ids, ...
    model.safetensors              or model-0000i-of-0000n.safetensors + model.safetensors.index.json
    preprocessor_config.json       the SigLIP image processor config (from vision_tower/)
    processor_config.json          auto_map of the AutoProcessor (remote code)
    tokenizer files, chat_template.jinja, generation_config.json   (from llm/)
    nvila_conversion.json          what the way back needs to restore the official folder exactly
    *.py                           remote code: small modules importing nvila's classes (`trust_remote_code=True`
                                   loads the folder wherever nvila is installed), or with `code_from` the
                                   released -hf folder's own
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nvila.atomic import atomic_folder
from nvila.checkpoint import PARTS, config_from_official, read_json, safetensors_files
from nvila.convert.configs import (
    auto_map,
    hf_config,
    model_type_of,
    processor_config,
    remote_code_files,
    sglang_notes,
)
from nvila.convert.layout import (
    PREPROCESSOR_CONFIG,
    PROCESSOR_CONFIG,
    RECORD_NAME,
    Converted,
    check_paths,
    write_record,
)
from nvila.convert.names import hf_name
from nvila.convert.shards import DEFAULT_MAX_SHARD_BYTES, INDEX_NAME, TensorRef, tensor_sizes, write_tensors
from nvila.convert.tokenizer_files import write_hf_tokenizer
from nvila.errors import CheckpointError
from nvila.models.nvila.tokenization_nvila import load_tokenizer
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN


def official_tensors(root: Path) -> list[TensorRef]:
    """Every tensor of an official checkpoint, under its HF name (part order, then file order)."""
    refs, seen = [], set()
    for part in PARTS:
        for file in safetensors_files(root / part):
            for key, nbytes in tensor_sizes(file).items():
                ref = TensorRef(hf_name(part, key), file, key, nbytes)
                if ref.name in seen:
                    raise CheckpointError(f"tensor {key!r} appears twice in {part}/")
                seen.add(ref.name)
                refs.append(ref)
    return refs


def to_hf(
    src: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    code_from: str | Path | None = None,
) -> Converted:
    """Convert the official checkpoint `src` into the HF folder `out` (see the module docstring)."""
    src, out = Path(src), Path(out)
    check_paths(src, out, overwrite, "official")
    cfg = config_from_official(src)
    vocab = load_tokenizer(src / "llm").get_vocab()
    configs = {name: read_json(src / name / "config.json") for name in PARTS}
    model_type = model_type_of(configs["mm_projector"]["mm_projector_type"])
    refs = official_tensors(src)
    with atomic_folder(out) as tmp:
        code = _copy_remote_code(Path(code_from), tmp, model_type) if code_from else _write_remote_code(tmp)
        own_map = _reference_auto_map(Path(code_from)) if code_from else auto_map(model_type)
        config, config_record = hf_config(
            read_json(src / "config.json"),
            configs["llm"],
            configs["vision_tower"],
            configs["mm_projector"],
            (vocab[IMAGE_TOKEN], vocab[VIDEO_TOKEN]),
            own_map,
        )
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if not (tmp / PROCESSOR_CONFIG).exists():
            (tmp / PROCESSOR_CONFIG).write_text(json.dumps(processor_config(own_map["AutoProcessor"]), indent=2))
        if (src / "vision_tower" / PREPROCESSOR_CONFIG).is_file():
            shutil.copy2(src / "vision_tower" / PREPROCESSOR_CONFIG, tmp / PREPROCESSOR_CONFIG)
        taken = {"config.json", PROCESSOR_CONFIG, PREPROCESSOR_CONFIG, RECORD_NAME, INDEX_NAME, *code}
        tokenizer_record = write_hf_tokenizer(src / "llm", tmp, taken)
        write_record(tmp, config_record, tokenizer_record)
        files = write_tensors(refs, tmp, max_shard_bytes)
    return Converted(out, model_type, files, sum(r.nbytes for r in refs), sglang_notes(cfg))


def _write_remote_code(out: Path) -> list[str]:
    """Write the remote code of nvila's own classes (`configs.REMOTE_CODE`); returns the file names."""
    files = remote_code_files()
    for name, text in files.items():
        (out / name).write_text(text)
    return sorted(files)


def _copy_remote_code(ref: Path, out: Path, model_type: str) -> list[str]:
    """Copy the `*.py` files (and processor_config.json) of a released -hf folder of the same model type."""
    ref_type = read_json(ref / "config.json").get("model_type")
    if ref_type != model_type:
        raise CheckpointError(f"--code-from {ref} is a {ref_type!r} checkpoint, but this model is {model_type!r}")
    code = sorted(p.name for p in ref.glob("*.py"))
    if not code:
        raise CheckpointError(f"--code-from {ref} holds no remote code (*.py files)")
    for name in [*code, PROCESSOR_CONFIG]:
        if (ref / name).is_file():
            shutil.copy2(ref / name, out / name)
    return code


def _reference_auto_map(ref: Path) -> dict[str, str]:
    auto_map = read_json(ref / "config.json").get("auto_map")
    if not isinstance(auto_map, dict):
        raise CheckpointError(f"--code-from {ref}: its config.json has no auto_map")
    return auto_map
