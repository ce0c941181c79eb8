"""config.json of the HF layout from the official configs, and back; what SGLang's NVILA code takes as fixed.

HF `config.json` = the HF keys below + every key of the official top `config.json` except `llm_cfg` and
`vision_tower_cfg` (those are `text_config` and `vision_config`). `record_of` notes which HF keys were added or
replaced, so the way back restores the official config exactly. A folder without that record (one released by
NVIDIA) gets the official keys it lacks from the matching preset (`PRESET_OF_MODEL_TYPE`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nvila.checkpoint import official_config
from nvila.errors import CheckpointError
from nvila.models.nvila.configuration_nvila import NVILAConfig, from_name
from nvila.models.nvila.configuration_pretrained import CONFIG_CLASSES, MODEL_TYPE_OF_PROJECTOR
from nvila.models.nvila.modeling_nvila import MODEL_CLASSES
from nvila.models.nvila.processing_nvila import NVILAProcessor

#: HF `model_type` -> `architectures`, the names SGLang dispatches on (models/nvila.py is the 2x2 Dynamic-S2 model,
#: nvila_lite.py the 3x3); nvila's model classes carry the same names. A projector's type: `MODEL_TYPE_OF_PROJECTOR`.
ARCHITECTURES = {model_type: MODEL_CLASSES[model_type].__name__ for model_type in ("nvila", "nvila_lite")}
#: The remote code `to_hf` writes: module file -> the nvila module and the classes it re-exports. Any environment
#: with nvila installed loads the folder with `trust_remote_code=True` (SGLang, or transformers without `import nvila`).
REMOTE_CODE = {
    "configuration_nvila.py": ("nvila.models.nvila.configuration_pretrained", list(CONFIG_CLASSES.values())),
    "modeling_nvila.py": ("nvila.models.nvila.modeling_nvila", list(MODEL_CLASSES.values())),
    "processing_nvila.py": ("nvila.models.nvila.processing_nvila", [NVILAProcessor]),
}


def remote_code_files() -> dict[str, str]:
    """The text of each remote-code module `to_hf` writes (see `REMOTE_CODE`)."""
    return {
        name: f'"""NVILA for transformers\' remote code: the classes of the installed `nvila` package."""\n\n'
        f"from {module} import {', '.join(sorted(c.__name__ for c in classes))}  # noqa: F401\n"
        for name, (module, classes) in REMOTE_CODE.items()
    }


def auto_map(model_type: str) -> dict[str, str]:
    """The `auto_map` of `config.json` pointing at the remote code `to_hf` writes for `model_type`."""
    model = MODEL_CLASSES[model_type].__name__
    return {
        "AutoConfig": f"configuration_nvila.{CONFIG_CLASSES[model_type].__name__}",
        "AutoModel": f"modeling_nvila.{model}",
        "AutoModelForImageTextToText": f"modeling_nvila.{model}",
        "AutoProcessor": f"processing_nvila.{NVILAProcessor.__name__}",
    }


def processor_config(processor_class_ref: str) -> dict[str, object]:
    """`processor_config.json`: the AutoProcessor's remote-code reference and the processor's class name."""
    return {
        "auto_map": {"AutoProcessor": processor_class_ref},
        "processor_class": processor_class_ref.rsplit(".", 1)[1],
    }


#: The geometry a released HF folder without our record is taken to have.
PRESET_OF_MODEL_TYPE = {"nvila": "nvila-8b", "nvila_lite": "nvila-lite-8b"}
#: The keys `hf_config` sets (a folder without our record has them dropped on the way back).
HF_KEYS = (
    "architectures",
    "model_type",
    "auto_map",
    "text_config",
    "vision_config",
    "image_token_id",
    "video_token_id",
    "mm_projector_type",
    "tie_word_embeddings",
    "torch_dtype",
    "quantization_config",
)
#: Keys of the official top config rebuilt from the part configs on the way back.
PART_CONFIG_KEYS = ("llm_cfg", "vision_tower_cfg", "mm_projector_cfg")
#: What SGLang's implementation hard-codes (sglang/srt/models/nvila.py, nvila_lite.py; processors/nvila.py).
SGLANG_TOWER_WIDTH = 1152
SGLANG_S2_SCALES = (448, 896, 1344)
SGLANG_VIDEO_FRAMES = 8


def model_type_of(projector_type: str) -> str:
    try:
        return MODEL_TYPE_OF_PROJECTOR[projector_type]
    except KeyError:
        raise CheckpointError(
            f"projector type {projector_type!r} has no HF model type; known: {sorted(MODEL_TYPE_OF_PROJECTOR)}"
        ) from None


def hf_config(
    top: dict[str, Any],
    llm: dict[str, Any],
    tower: dict[str, Any],
    projector: dict[str, Any],
    media_token_ids: tuple[int, int],
    auto_map: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(HF config.json, the record of its added / replaced keys) from the four official configs."""
    model_type = model_type_of(projector["mm_projector_type"])
    own = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "auto_map": auto_map,
        "text_config": llm,
        "vision_config": tower,
        "image_token_id": media_token_ids[0],
        "video_token_id": media_token_ids[1],
        "mm_projector_type": projector["mm_projector_type"],
        "tie_word_embeddings": llm.get("tie_word_embeddings", False),  # transformers 4.x defaults it to True
        "torch_dtype": llm.get("torch_dtype") or llm.get("dtype") or "bfloat16",
    }
    quantization = top_quantization_config(llm, tower, projector)
    if quantization is not None:
        own["quantization_config"] = quantization
    rest = {k: v for k, v in top.items() if k not in PART_CONFIG_KEYS}
    rest["mm_projector_cfg"] = projector
    record = {
        "added": [k for k in own if k not in rest],
        "replaced": {k: rest[k] for k in own if k in rest and rest[k] != own[k]},
    }
    return {**own, **{k: v for k, v in rest.items() if k not in own}}, record


def top_quantization_config(
    llm: dict[str, Any], tower: dict[str, Any], projector: dict[str, Any]
) -> dict[str, Any] | None:
    """The top-level "quantization_config" SGLang reads (it ignores the one inside `text_config`), or None.

    SGLang applies one method to the whole model: an AWQ LLM beside a float tower and projector is that method
    with the tower and projector in `modules_to_not_convert` (SGLang matches those names as substrings of its
    module prefixes `llm.`, `vision_tower.`, `mm_projector.`). A quantized tower or projector cannot be written
    so that SGLang loads it (W8A8 is a second method, and its int8 tensors are names SGLang's NVILA does not know):
    `CheckpointError`.
    """
    for part, config in (("vision tower", tower), ("projector", projector)):
        if "quantization_config" in config:
            method = config["quantization_config"].get("quant_method", "quantized")
            raise CheckpointError(
                f"the {part} is quantized ({method}), which SGLang's NVILA cannot load beside an LLM in its own "
                "format; quantize with `nvila quantize --vision none` to convert for SGLang"
            )
    if "quantization_config" not in llm:
        return None
    quantization = dict(llm["quantization_config"])
    in_float = [f"llm.{name}" for name in quantization.get("modules_to_not_convert") or []]
    quantization["modules_to_not_convert"] = ["vision_tower", "mm_projector", *in_float]
    return quantization


def official_configs(
    hf: dict[str, Any], record: dict[str, Any] | None, name: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(top, llm, vision_tower, mm_projector) official configs of an HF config.json and its record (or None)."""
    try:
        llm, tower, model_type = hf["text_config"], hf["vision_config"], hf["model_type"]
    except KeyError as e:
        raise CheckpointError(f"the HF config.json lacks the required key {e}") from None
    if model_type not in ARCHITECTURES:
        raise CheckpointError(f"HF model_type {model_type!r} is not an NVILA model; known: {sorted(ARCHITECTURES)}")
    if record is None:  # a folder written elsewhere: drop every HF key, fill the official ones from the preset
        record = {"added": list(HF_KEYS), "replaced": {}}
        known = {"hidden_size": llm["hidden_size"], "mm_projector": hf.get("mm_projector_type")}
        hf = {**_preset_top(model_type, tower, name), **{k: v for k, v in known.items() if v is not None}, **hf}
    top = {k: v for k, v in hf.items() if k not in record["added"]}
    top.update(record["replaced"])
    projector = top.get("mm_projector_cfg") or {
        "architectures": ["MultimodalProjector"],
        "mm_projector_type": top["mm_projector"],
        "model_type": "v2l_projector",
        "torch_dtype": llm.get("torch_dtype", "bfloat16"),
    }
    top.update(llm_cfg=llm, vision_tower_cfg=tower, mm_projector_cfg=projector)
    return top, llm, tower, projector


def _preset_top(model_type: str, tower: dict[str, Any], name: str) -> dict[str, Any]:
    """The official top config of the model type's preset, with the tower width of this model."""
    preset = from_name(PRESET_OF_MODEL_TYPE[model_type])
    cfg = dataclasses.replace(preset, vision=dataclasses.replace(preset.vision, hidden_size=tower["hidden_size"]))
    top = official_config(cfg, name)["top"]
    for key in (*PART_CONFIG_KEYS, "hidden_size"):  # these come from the folder's own configs
        top.pop(key)
    return top


def sglang_notes(cfg: NVILAConfig) -> list[str]:
    """Where this model differs from the geometry SGLang's NVILA / NVILA-Lite code hard-codes (empty: none)."""
    model_type = model_type_of(cfg.projector_type)
    notes = []
    if cfg.vision.hidden_size != SGLANG_TOWER_WIDTH:
        notes.append(f"the vision tower is {cfg.vision.hidden_size} wide; SGLang assumes {SGLANG_TOWER_WIDTH}")
    if cfg.select_layer != -2:
        notes.append(f"features come from hidden layer {cfg.select_layer}; SGLang takes -2")
    if model_type == "nvila" and (not cfg.dynamic_s2 or cfg.s2_scales != SGLANG_S2_SCALES):
        notes.append(
            f"images use {cfg.image_aspect_ratio} at scales {list(cfg.s2_scales)}; SGLang's nvila runs Dynamic-S2 at "
            f"{list(SGLANG_S2_SCALES)}"
        )
    if model_type == "nvila_lite" and cfg.image_aspect_ratio != "dynamic":
        notes.append(f"images use {cfg.image_aspect_ratio}; SGLang's nvila_lite tiles dynamically")
    if cfg.num_video_frames != SGLANG_VIDEO_FRAMES or cfg.num_time_tokens:
        notes.append(
            f"the model takes {cfg.num_video_frames} video frames"
            + (f" with {cfg.num_time_tokens} time tokens" if cfg.num_time_tokens else "")
            + f"; SGLang samples {SGLANG_VIDEO_FRAMES} frames without time tokens"
        )
    return notes
