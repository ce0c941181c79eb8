"""The transformers configuration of NVILA: a composite `PreTrainedConfig` that `AutoConfig` reads.

Owns: `NVILAPretrainedConfig` (model type `nvila`, the released `-hf` NVILA checkpoints), `NVILALitePretrainedConfig`
(`nvila_lite`) and `NVILAOfficialPretrainedConfig` (`llava_llama`, the top `config.json` of the official layout); the
transformers configs of the two sub-models (`siglip_config`, `qwen2_config`). The composite holds a SigLIP
`vision_config`, a Qwen2 `text_config` and the projector, scale and video settings under the key names of the
released `config.json` files; `to_nvila` gives the typed `NVILAConfig` every other module works with (through the
one key mapping, `configuration_nvila.from_official_configs`) and `from_nvila` goes back. Defaults are NVILA-8B's.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePath
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, Qwen2Config, SiglipVisionConfig
from transformers.configuration_utils import SubConfigSpec

from nvila.models.nvila.configuration_nvila import (
    NVILAConfig,
    TextConfig,
    VisionConfig,
    from_official_configs,
    video_encoder_of,
)

#: Projector type -> the model type of its released `-hf` checkpoints (NVILA: 2x2 + Dynamic-S2; NVILA-Lite: 3x3).
MODEL_TYPE_OF_PROJECTOR = {
    "mlp_downsample": "nvila",
    "mlp_downsample_2x2_fix": "nvila",
    "mlp_downsample_3x3_fix": "nvila_lite",
}
#: Keys of the official top config under which the official layout nests the part configs.
OFFICIAL_PART_KEYS = {"llm_cfg": "text_config", "vision_tower_cfg": "vision_config"}


def _siglip_kwargs(cfg: VisionConfig) -> dict[str, Any]:
    return {
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_act": cfg.hidden_act,
        "vision_use_head": False,
    }


def _qwen2_kwargs(cfg: TextConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "use_sliding_window": False,
        "hidden_act": "silu",
        "model_max_length": cfg.model_max_length,
    }


def siglip_config(cfg: VisionConfig) -> SiglipVisionConfig:
    """The transformers config of a SigLIP tower of these sizes (no pooling head, as NVILA)."""
    return SiglipVisionConfig(**_siglip_kwargs(cfg))


def qwen2_config(cfg: TextConfig) -> Qwen2Config:
    """The transformers config of a Qwen2 decoder of these sizes (with its `model_max_length`)."""
    return Qwen2Config(**_qwen2_kwargs(cfg))


@strict(accept_kwargs=True)
class NVILAPretrainedConfig(PreTrainedConfig):
    """NVILA as transformers sees it: SigLIP `vision_config`, Qwen2 `text_config`, projector and media settings.

    The fields carry the key names of the released checkpoints' `config.json` (`mm_projector_type`, `s2_scales` as
    "448,896,1344", `mm_vision_select_layer`, `video_encoder`...), so `AutoConfig.from_pretrained` reads a released
    folder as it is; any other key of such a file is kept as an attribute. `to_nvila()` is the typed description.
    """

    model_type: ClassVar[str] = "nvila"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "vision_config": SubConfigSpec(SiglipVisionConfig, init_kwargs=_siglip_kwargs(VisionConfig())),
        "text_config": SubConfigSpec(Qwen2Config, init_kwargs=_qwen2_kwargs(TextConfig())),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    mm_projector_type: str = "mlp_downsample"
    image_aspect_ratio: str = "dynamic_s2"
    s2_scales: str | list[int] | None = "448,896,1344"
    min_tiles: int | None = 1
    max_tiles: int | None = 12
    mm_vision_select_layer: int = -2
    num_video_frames: int | None = 8
    video_encoder: dict | None = None
    fps: float | int | None = 0.0
    num_time_tokens: int | None = 0
    time_token_format: str | None = "<t{t}>"
    media_end_text: str = "\n"
    image_token_id: int | None = None
    video_token_id: int | None = None
    image_mean: list[float] | tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: list[float] | tuple[float, ...] = (0.5, 0.5, 0.5)
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        for official, key in OFFICIAL_PART_KEYS.items():  # the official layout's top config nests the parts
            if official in kwargs and getattr(self, key) is None:
                setattr(self, key, kwargs.pop(official))
        projector = kwargs.pop("mm_projector_cfg", None) or {}
        if "mm_projector_type" in projector:
            self.mm_projector_type = projector["mm_projector_type"]
        super().__post_init__(**kwargs)
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))

    def to_nvila(self) -> NVILAConfig:
        """The typed `NVILAConfig` of this config (named after the folder or repository it came from)."""
        top = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.endswith("_config")}
        name = PurePath(self.name_or_path).name if self.name_or_path else "custom"
        return from_official_configs(
            top,
            self.text_config.to_dict(),
            self.vision_config.to_dict(),
            {"mm_projector_type": self.mm_projector_type},
            {"image_mean": list(self.image_mean), "image_std": list(self.image_std)},
            name,
        )

    @staticmethod
    def from_nvila(cfg: NVILAConfig) -> NVILAPretrainedConfig:
        """The transformers config of `cfg`, of the class its projector's model type registers."""
        cls = CONFIG_CLASSES[MODEL_TYPE_OF_PROJECTOR[cfg.projector_type]]
        return cls(
            vision_config=siglip_config(cfg.vision),
            text_config=qwen2_config(cfg.text),
            mm_projector_type=cfg.projector_type,
            image_aspect_ratio=cfg.image_aspect_ratio,
            s2_scales=",".join(str(s) for s in cfg.s2_scales),
            min_tiles=cfg.min_tiles,
            max_tiles=cfg.max_tiles,
            mm_vision_select_layer=cfg.select_layer,
            num_video_frames=cfg.num_video_frames,
            video_encoder=video_encoder_of(cfg.video_pool_size),
            fps=cfg.fps,
            num_time_tokens=cfg.num_time_tokens,
            time_token_format=cfg.time_token_format,
            media_end_text=cfg.media_end_text,
            image_token_id=cfg.image_token_id,
            video_token_id=cfg.video_token_id,
            image_mean=list(cfg.vision.image_mean),
            image_std=list(cfg.vision.image_std),
            name_or_path=cfg.name,
        )


@strict(accept_kwargs=True)
class NVILALitePretrainedConfig(NVILAPretrainedConfig):
    """NVILA-Lite (`nvila_lite`): dynamic tiling with a thumbnail and the 3x3 projector."""

    model_type: ClassVar[str] = "nvila_lite"
    mm_projector_type: str = "mlp_downsample_3x3_fix"
    image_aspect_ratio: str = "dynamic"


@strict(accept_kwargs=True)
class NVILAOfficialPretrainedConfig(NVILAPretrainedConfig):
    """The top `config.json` of the official layout (`llava_llama`: `llm_cfg`, `vision_tower_cfg` nested inside)."""

    model_type: ClassVar[str] = "llava_llama"


#: Model type -> config class, as registered with `AutoConfig`.
CONFIG_CLASSES: dict[str, type[NVILAPretrainedConfig]] = {
    cls.model_type: cls for cls in (NVILAPretrainedConfig, NVILALitePretrainedConfig, NVILAOfficialPretrainedConfig)
}
