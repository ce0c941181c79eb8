"""Official NVILA checkpoint layout: load, validate, save.

Layout (what released NVILA checkpoints ship as, and what the official code reads)::

    config.json            top config: llm_cfg, vision_tower_cfg, mm_projector_cfg, image_aspect_ratio, ...
    llm/                   Qwen2 config.json, *.safetensors (official key names), tokenizer files
    vision_tower/          SigLIP config.json, *.safetensors (`vision_model.` prefix), preprocessor_config.json
    mm_projector/          config.json (mm_projector_type), *.safetensors (`layers.N.`)

Owns: mapping between this layout and `NVILAConfig` / the module's state dict, strict name and shape
validation with a message that names what is missing or mismatched, safetensors only (pickle is refused),
and atomic saving (a temporary folder renamed into place). A part whose config holds a "quantization_config"
gets its quantized linears (`nvila.ops.quantized`) before its tensors are read, and keeps it when saved.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase
from transformers.initialization import no_init_weights

from nvila import json_io
from nvila.atomic import atomic_folder
from nvila.errors import CheckpointError, ConfigError
from nvila.models.nvila.configuration_nvila import NVILAConfig, from_official_configs, video_encoder_of
from nvila.models.nvila.configuration_pretrained import qwen2_config, siglip_config
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration, model_class_of
from nvila.models.nvila.processing_nvila import NVILAProcessor
from nvila.models.nvila.tokenization_nvila import load_tokenizer, save_tokenizer
from nvila.ops.quantized import prepare_quantized, quantization_configs
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN

#: Sub-folder of each part and the prefix its tensors carry inside our module.
PARTS = {"llm": "llm.", "vision_tower": "vision_tower.model.", "mm_projector": "mm_projector."}
#: Prefix of the tower's tensors in the official files (transformers 4.x `SiglipVisionModel` names).
OFFICIAL_TOWER_PREFIX = "vision_model."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: The official encoder of videos without temporal pooling.
BASIC_VIDEO_ENCODER = "llava.model.encoders.BasicVideoEncoder"


# ---- config mapping -----------------------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON object file; `CheckpointError` naming the file (and the line and column of malformed
    JSON) when it is missing, malformed or not an object."""
    return json_io.read_json(path, CheckpointError, want=dict)


@dataclass(frozen=True)
class CheckpointFiles:
    """What loading reads from a checkpoint folder, whatever its layout (official here, HF in `nvila.convert`)."""

    root: Path  #: the folder, named in errors
    configs: dict[str, dict[str, Any]]  #: the official configs: "top" and each of `PARTS`
    preprocessor: dict[str, Any]  #: the SigLIP image-processor config ({} when the folder has none)
    tokenizer_dir: Path  #: the folder the tokenizer loads from
    tensors: Callable[[], Iterator[tuple[str, Path, str]]]  #: yields (module key, file, key in the file)


def official_files(root: Path) -> CheckpointFiles:
    """An official-layout folder: `config.json` and the three part folders (see the module docstring)."""
    configs = {"top": read_json(root / "config.json")}
    configs.update({part: read_json(root / part / "config.json") for part in PARTS})
    pre_path = root / "vision_tower" / "preprocessor_config.json"
    pre = read_json(pre_path) if pre_path.is_file() else {}
    return CheckpointFiles(root, configs, pre, root / "llm", lambda: read_official_tensors(root))


def config_from_official(root: Path) -> NVILAConfig:
    """Read an official checkpoint folder's configs into an `NVILAConfig`."""
    return config_from_files(official_files(root))


def config_from_files(files: CheckpointFiles, name: str | None = None) -> NVILAConfig:
    """The `NVILAConfig` of a checkpoint's configs; `name` defaults to the folder's name."""
    try:
        return from_official_configs(
            *(files.configs[k] for k in ("top", "llm", "vision_tower", "mm_projector")),
            files.preprocessor,
            name or files.root.name,
        )
    except KeyError as e:
        raise CheckpointError(f"{files.root}: a config lacks the required key {e}") from None
    except ConfigError as e:
        raise CheckpointError(f"{files.root}: {e}") from None
    except (TypeError, ValueError) as e:  # e.g. image_mean a number, s2_scales "448,x"
        raise CheckpointError(f"{files.root}: a config value has the wrong type ({e})") from None


def quantization_of(files: CheckpointFiles) -> dict[str, dict[str, Any]]:
    """The "quantization_config" of the `llm` and `vision_tower` configs (see docs/quantization.md), by part."""
    configs = {part: files.configs[part].get("quantization_config") for part in PARTS}
    return {part: config for part, config in configs.items() if config is not None}


def official_config(cfg: NVILAConfig, root_name: str) -> dict[str, dict[str, Any]]:
    """The four config files of the official layout for `cfg`: top, llm, vision_tower, mm_projector."""
    llm = qwen2_config(cfg.text).to_dict()
    llm.update(architectures=["Qwen2ForCausalLM"], model_max_length=cfg.text.model_max_length, torch_dtype="bfloat16")
    tower = siglip_config(cfg.vision).to_dict()
    tower.update(architectures=["SiglipVisionModel"], torch_dtype="bfloat16")
    projector = {
        "architectures": ["MultimodalProjector"],
        "mm_projector_type": cfg.projector_type,
        "model_type": "v2l_projector",
        "torch_dtype": "bfloat16",
    }
    top = {
        "architectures": ["LlavaLlamaModel"],
        "model_type": "llava_llama",
        "_name_or_path": root_name,
        "resume_path": root_name,
        "model_dtype": "torch.bfloat16",
        "llm_cfg": llm,
        "vision_tower_cfg": tower,
        "mm_projector_cfg": projector,
        "mm_projector": cfg.projector_type,
        "hidden_size": cfg.text.hidden_size,
        "mm_hidden_size": cfg.mm_hidden_size,
        "image_aspect_ratio": cfg.image_aspect_ratio,
        "dynamic_s2": cfg.dynamic_s2,
        "s2": False,
        "s2_scales": ",".join(str(s) for s in cfg.s2_scales),
        "s2_max_split_size": cfg.s2_scales[0],
        "s2_resize_output_to_scale_idx": -1,
        "min_tiles": cfg.min_tiles,
        "max_tiles": cfg.max_tiles,
        "video_max_tiles": 1,
        "mm_vision_select_layer": cfg.select_layer,
        "mm_vision_select_feature": "cls_patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "num_video_frames": cfg.num_video_frames,
        "fps": cfg.fps,
        "num_time_tokens": cfg.num_time_tokens,
        "time_token_format": cfg.time_token_format,
        "chat_template": "qwen2",
        "ps3": False,
        "image_encoder": {"_target_": "llava.model.encoders.BasicImageEncoder"},
        "video_encoder": video_encoder_of(cfg.video_pool_size) or {"_target_": BASIC_VIDEO_ENCODER},
        "tune_language_model": True,
        "tune_mm_projector": True,
        "tune_vision_tower": True,
        "vision_resolution": -1,
        "interpolate_mode": "linear",
        "drop_path_rate": 0.0,
    }
    return {"top": top, "llm": llm, "vision_tower": tower, "mm_projector": projector}


def preprocessor_config(cfg: NVILAConfig) -> dict[str, Any]:
    """`vision_tower/preprocessor_config.json` (a transformers `SiglipImageProcessor`)."""
    return {
        "do_convert_rgb": None,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(cfg.vision.image_mean),
        "image_std": list(cfg.vision.image_std),
        "image_processor_type": "SiglipImageProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": cfg.tile_size, "width": cfg.tile_size},
    }


# ---- tensors ------------------------------------------------------------------------------------------
def safetensors_files(folder: Path) -> list[Path]:
    """The safetensors files of one part (single file or shards named by an index); refuses pickle."""
    if not folder.is_dir():
        raise CheckpointError(f"missing folder: {folder}")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        files = [folder / s for s in shards]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"missing safetensors shards: {', '.join(missing)}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{folder} holds only pickle weights ({', '.join(pickles)}); pickle files are refused because loading "
            "them can run arbitrary code. Convert them to safetensors first."
        )
    raise CheckpointError(f"no *.safetensors weights in {folder}")


def official_to_local(part: str, key: str) -> str:
    """The module key of tensor `key` in the official `part` folder (`<unexpected>...` for a tower name without
    the official prefix, so that validation names it)."""
    if part == "vision_tower":
        if not key.startswith(OFFICIAL_TOWER_PREFIX):
            return f"<unexpected>{key}"
        key = key[len(OFFICIAL_TOWER_PREFIX) :]
    return PARTS[part] + key


def read_official_tensors(root: Path) -> Iterator[tuple[str, Path, str]]:
    """Yield (module key, file, file key) for every tensor of the checkpoint."""
    for part in PARTS:
        for file in safetensors_files(root / part):
            try:
                with safe_open(str(file), framework="pt") as f:
                    keys = list(f.keys())
            except Exception as e:  # safetensors raises its own error types for corrupt headers
                raise CheckpointError(f"cannot read {file}: {e}") from None
            for key in keys:
                yield official_to_local(part, key), file, key


def describe_names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def load_state(model: NVILAForConditionalGeneration, files: CheckpointFiles, *, skip: Sequence[str] = ()) -> None:
    """Fill `model` from the checkpoint's tensors, after checking every name and shape.

    Parts named in `skip` (keys of `PARTS`) are neither required nor loaded: they keep `model`'s weights.
    """
    unknown = sorted(set(skip) - set(PARTS))
    if unknown:
        raise ConfigError(f"unknown checkpoint parts {unknown}; use {', '.join(PARTS)}")
    skipped = tuple(PARTS[part] for part in skip)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(skipped)}
    tied = model.nvila_config.text.tie_word_embeddings
    locations = {key: (f, f_key) for key, f, f_key in files.tensors() if not key.startswith(skipped)}
    optional = {"llm.lm_head.weight"} if tied else set()
    missing = sorted(set(expected) - set(locations) - optional)
    unexpected = sorted(set(locations) - set(expected))
    mismatched = []
    handles: dict[Path, Any] = {}
    with contextlib.ExitStack() as stack:
        for key, (file, file_key) in sorted(locations.items()):
            if key not in expected:
                continue
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(str(file), framework="pt"))
            shape = tuple(handles[file].get_slice(file_key).get_shape())
            if shape != tuple(expected[key].shape):
                mismatched.append(
                    f"{file_key} in {file.parent.name}/ is {list(shape)}, expected {list(expected[key].shape)}"
                )
        problems = []
        if missing:
            problems.append(f"missing tensors: {describe_names(missing)}")
        if mismatched:
            problems.append(f"shape mismatches: {describe_names(mismatched)}")
        if unexpected:
            problems.append(f"unexpected tensors: {describe_names(unexpected)}")
        if problems:
            raise CheckpointError(f"checkpoint {files.root} does not match its config; " + "; ".join(problems))
        with torch.no_grad():
            for key, (file, file_key) in locations.items():
                expected[key].copy_(handles[file].get_tensor(file_key))
    if tied:
        model.llm.tie_weights()


# ---- public API ---------------------------------------------------------------------------------------
def build_model(
    cfg: NVILAConfig, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, init: bool = True
) -> NVILAForConditionalGeneration:
    """A model of `cfg` (random weights, or uninitialised memory with `init=False` before loading)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), contextlib.nullcontext() if init else no_init_weights():
            model = model_class_of(cfg)(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def is_hf_layout(root: Path) -> bool:
    """True for a single-folder Hugging Face checkpoint (`config.json` with `text_config` and `vision_config`,
    no `llm/` part), the layout `nvila convert --to hf` writes and SGLang serves."""
    path = root / "config.json"
    if (root / "llm").is_dir() or not path.is_file():
        return False
    try:
        top = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(top, dict) and "text_config" in top and "vision_config" in top


def load_files(
    files: CheckpointFiles,
    *,
    name: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    overrides: dict[str, Any] | None = None,
    reinit: Sequence[str] = (),
) -> tuple[NVILAForConditionalGeneration, NVILAProcessor]:
    """Build the model of a checkpoint's files and fill it: returns (model in eval mode, processor).

    Use `nvila.load`, which finds the files of a folder in either layout or of a hub id. `overrides` changes
    config fields first (`NVILAConfig.with_overrides`: frames, pooling, projector type...); parts named in `reinit`
    (keys of `PARTS`) keep random weights from the current torch seed instead of being loaded, for a geometry
    change that reshapes them. Raises `CheckpointError` naming every missing file, missing tensor or shape mismatch.
    """
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    processor = processor_from_files(files, name=name, overrides=overrides)
    cfg = processor.config
    model = build_model(cfg, device=device, dtype=dtype, init=bool(reinit))
    prepare_quantized(
        model.llm, model.vision_tower.model, quantization_of(files),
        tower_prefix=OFFICIAL_TOWER_PREFIX, where=str(files.root),
    )  # fmt: skip
    load_state(model, files, skip=reinit)
    set_generation_tokens(model, processor)
    return model, processor


def set_generation_tokens(model: NVILAForConditionalGeneration, processor: NVILAProcessor) -> None:
    """`model.generate()` stops at the processor's end-of-turn ids and pads with its pad id."""
    model.generation_config.eos_token_id = list(processor.eos_token_ids)
    model.generation_config.pad_token_id = processor.pad_token_id


def processor_from_files(
    files: CheckpointFiles, *, name: str | None = None, overrides: dict[str, Any] | None = None
) -> NVILAProcessor:
    """The processor of a checkpoint's files: its tokenizer and its config (media token ids from the tokenizer)."""
    cfg = config_from_files(files, name).with_overrides(overrides or {})
    tokenizer = load_tokenizer(files.tokenizer_dir)
    vocab = tokenizer.get_vocab()
    cfg.image_token_id, cfg.video_token_id = vocab[IMAGE_TOKEN], vocab[VIDEO_TOKEN]
    return NVILAProcessor(tokenizer, cfg)


def resolve_device(name: str | torch.device) -> torch.device:
    """A torch device that exists on this machine, or a `ConfigError` saying why not."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available on this machine")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' (or 'fp32', 'bf16', 'fp16') -> torch dtype."""
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; use one of {', '.join(table)}") from None


def part_state(model: NVILAForConditionalGeneration, part: str) -> dict[str, torch.Tensor]:
    """The part's tensors under their file names: parameters in bf16, buffers (quantized data) as they are."""
    prefix = PARTS[part]
    parameters = dict(model.named_parameters(remove_duplicate=False))
    out = {}
    for key, tensor in model.state_dict().items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if part == "vision_tower":
            name = OFFICIAL_TOWER_PREFIX + name
        if part == "llm" and name == "lm_head.weight" and model.nvila_config.text.tie_word_embeddings:
            continue
        dtype = torch.bfloat16 if key in parameters and tensor.is_floating_point() else tensor.dtype
        out[name] = tensor.detach().to("cpu", dtype).contiguous()
    return out


def model_configs(model: NVILAForConditionalGeneration, root_name: str) -> dict[str, dict[str, Any]]:
    """The official configs of `model` (`official_config`), with the "quantization_config" of its quantized parts."""
    configs = official_config(model.nvila_config, root_name)
    quantized = quantization_configs(model.llm, model.vision_tower.model, tower_prefix=OFFICIAL_TOWER_PREFIX)
    for part, config in quantized.items():
        configs[part]["quantization_config"] = config  # also in the top config's llm_cfg / vision_tower_cfg
    return configs


def save(
    model: NVILAForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the model in the official layout (bf16 safetensors) atomically; returns the folder.

    The folder appears only when complete: it is written under a temporary name, then renamed.
    """
    root = Path(path)
    if root.exists() and not overwrite:
        raise CheckpointError(f"{root} already exists; pass overwrite=True (--overwrite) to replace it")
    with atomic_folder(root) as tmp:
        configs = model_configs(model, root.name)
        for part in PARTS:
            (tmp / part).mkdir()
            (tmp / part / "config.json").write_text(json.dumps(configs[part], indent=2))
            save_file(part_state(model, part), str(tmp / part / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "vision_tower" / "preprocessor_config.json").write_text(
            json.dumps(preprocessor_config(model.nvila_config), indent=2)
        )
        (tmp / "config.json").write_text(json.dumps(configs["top"], indent=2))
        save_tokenizer(tokenizer, tmp / "llm")
    return root
