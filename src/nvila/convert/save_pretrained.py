"""transformers' `save_pretrained` for NVILA: a model and its processor written into one folder in the HF layout.

`model.save_pretrained(out)` writes `config.json`, `model.safetensors` (bf16 parameters, quantized buffers as they
are), `generation_config.json` and the remote code (`nvila convert --to hf`'s); `processor.save_pretrained(out)`
writes the tokenizer, the chat template and the image processor's config. Each writes only its own files, in
either order, as transformers' classes do; the folder loads with `from_pretrained` / `nvila.load` once both are
there (the loader needs the tokenizer).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from nvila.checkpoint import PARTS, model_configs, part_state, preprocessor_config
from nvila.convert.configs import auto_map, hf_config, model_type_of, processor_config, remote_code_files
from nvila.convert.layout import PREPROCESSOR_CONFIG, PROCESSOR_CONFIG
from nvila.convert.names import hf_name
from nvila.convert.shards import INDEX_NAME
from nvila.convert.tokenizer_files import write_hf_tokenizer
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor
from nvila.models.nvila.tokenization_nvila import save_tokenizer

WEIGHTS = "model.safetensors"


def check_local(push_to_hub: bool) -> None:
    """`save_pretrained` writes locally only: `ValueError` for `push_to_hub`, saying how to upload instead."""
    if push_to_hub:
        raise ValueError("save locally, then upload the folder with `hf upload` (push_to_hub is not supported)")


def save_model(model: NVILAForConditionalGeneration, out: str | os.PathLike) -> Path:
    """Write the model's files of the HF layout into `out` (created if missing); returns the folder."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    cfg = model.nvila_config
    configs = model_configs(model, root.name)
    model_type = model_type_of(cfg.projector_type)
    config, _ = hf_config(
        configs["top"],
        configs["llm"],
        configs["vision_tower"],
        configs["mm_projector"],
        (cfg.image_token_id, cfg.video_token_id),
        auto_map(model_type),
    )
    (root / "config.json").write_text(json.dumps(config, indent=2))
    for name, text in remote_code_files().items():
        (root / name).write_text(text)
    tensors = {hf_name(part, name): t for part in PARTS for name, t in part_state(model, part).items()}
    (root / INDEX_NAME).unlink(missing_ok=True)  # a sharded save before: this single file replaces it
    save_file(tensors, str(root / WEIGHTS), metadata={"format": "pt"})
    model.generation_config.save_pretrained(root)
    return root


def save_processor(processor: NVILAProcessor, out: str | os.PathLike) -> Path:
    """Write the processor's files of the HF layout (tokenizer, chat template, image processor) into `out`."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_tokenizer(processor.tokenizer, Path(tmp))
        write_hf_tokenizer(Path(tmp), root, taken={"config.json", WEIGHTS, PREPROCESSOR_CONFIG, PROCESSOR_CONFIG})
    (root / PREPROCESSOR_CONFIG).write_text(json.dumps(preprocessor_config(processor.config), indent=2))
    reference = auto_map(model_type_of(processor.config.projector_type))["AutoProcessor"]
    (root / PROCESSOR_CONFIG).write_text(json.dumps(processor_config(reference), indent=2))
    return root
