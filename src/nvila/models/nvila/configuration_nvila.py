"""Typed configuration of an NVILA model and its named presets.

Owns: the dataclasses describing the vision tower (SigLIP), the LLM (Qwen2), the projector and the
media geometry, their YAML/dict round trip, the preset table (`from_name`), and the one mapping from the keys of
the official config files to them (`from_official_configs`). Does not own reading files (`nvila.checkpoint`), the
transformers config (`configuration_pretrained`) nor token arithmetic (`geometry`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from nvila.errors import ConfigError

ProjectorType = Literal["mlp_downsample", "mlp_downsample_2x2_fix", "mlp_downsample_3x3_fix"]
ImageAspectRatio = Literal["dynamic_s2", "dynamic", "resize"]

#: Fields that must be integers >= 1, per config part: checked first, so a checkpoint's config with a
#: string, a float or a zero there is a `ConfigError` naming the field, not a crash further on.
POSITIVE_INTS: dict[str, tuple[str, ...]] = {
    "vision": ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
               "patch_size"),
    "text": ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "max_position_embeddings", "model_max_length"),
    "": ("min_tiles", "max_tiles", "num_video_frames", "video_pool_size"),
}  # fmt: skip

#: Spatial-to-channel group size k (k x k patches become one token) of each projector type.
PROJECTOR_DOWNSAMPLE: dict[str, int] = {
    "mlp_downsample": 2,
    "mlp_downsample_2x2_fix": 2,
    "mlp_downsample_3x3_fix": 3,
}


@dataclass
class VisionConfig:
    """SigLIP vision tower. Defaults are SigLIP SO400M at 448 px (NVILA's tower)."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    image_size: int = 448  #: tile side in pixels; every ViT pass sees one tile
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  #: per-channel, applied after /255
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size


@dataclass
class TextConfig:
    """Qwen2 decoder. Defaults are the Qwen2.5-7B sizes used by NVILA-8B."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    model_max_length: int = 32768  #: longest sequence (text + visual tokens) the model is run on


@dataclass
class NVILAConfig:
    """A complete NVILA model: tower, projector, LLM and how media become tokens."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    projector_type: ProjectorType = "mlp_downsample"
    #: "dynamic_s2" (NVILA), "dynamic" (NVILA-Lite tiling + thumbnail) or "resize" (one tile).
    image_aspect_ratio: ImageAspectRatio = "dynamic_s2"
    #: Dynamic-S2 scales in pixels; the first equals the tile size, all are multiples of it.
    s2_scales: tuple[int, ...] = (448, 896, 1344)
    min_tiles: int = 1
    max_tiles: int = 12
    select_layer: int = -2  #: tower hidden state fed to the projector (-2: second to last)
    num_video_frames: int = 8
    video_pool_size: int = 1  #: frames averaged together after the projector (temporal compression)
    fps: float = 0.0  #: target sampling rate for video (0: uniform over the whole video)
    num_time_tokens: int = 0  #: `<t0>`...`<tN-1>` time tokens for temporal localization (0: none)
    time_token_format: str = "<t{t}>"
    media_end_text: str = "\n"  #: text whose embedding follows every image / video frame
    image_token_id: int | None = None  #: id of `<image>`; default: vocab_size - 2
    video_token_id: int | None = None  #: id of `<vila/video>`; default: vocab_size - 1
    name: str = "custom"

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**_known(VisionConfig, self.vision, "vision"))
        if isinstance(self.text, dict):
            self.text = TextConfig(**_known(TextConfig, self.text, "text"))
        self.vision.image_mean = tuple(self.vision.image_mean)
        self.vision.image_std = tuple(self.vision.image_std)
        self.s2_scales = tuple(int(s) if isinstance(s, str) and s.isdigit() else s for s in self.s2_scales)
        if self.image_token_id is None:
            self.image_token_id = self.text.vocab_size - 2
        if self.video_token_id is None:
            self.video_token_id = self.text.vocab_size - 1
        self.validate()

    # ---- derived geometry -------------------------------------------------------------------------
    @property
    def tile_size(self) -> int:
        return self.vision.image_size

    @property
    def downsample(self) -> int:
        return PROJECTOR_DOWNSAMPLE[self.projector_type]

    @property
    def dynamic_s2(self) -> bool:
        return self.image_aspect_ratio == "dynamic_s2"

    @property
    def tokens_per_tile(self) -> int:
        """Projector output tokens for one tile: ceil(p / k)^2 (2x2: 256, 3x3: 121 at 448 px)."""
        side = -(-self.vision.patches_per_side // self.downsample)
        return side * side

    @property
    def mm_hidden_size(self) -> int:
        """Channels entering the projector: the tower width, times the number of scales with Dynamic-S2."""
        return self.vision.hidden_size * (len(self.s2_scales) if self.dynamic_s2 else 1)

    # ---- checks and (de)serialisation ---------------------------------------------------------------
    def validate(self) -> None:
        """Raise `ConfigError` naming the first inconsistent field."""
        for part, names in POSITIVE_INTS.items():
            owner = getattr(self, part) if part else self
            for name in names:
                value = getattr(owner, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"{part + '.' if part else ''}{name} must be an integer >= 1, got {value!r}")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.s2_scales):
            raise ConfigError(f"s2_scales must be integers >= 1, got {list(self.s2_scales)}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)):
            raise ConfigError(f"fps must be a number, got {self.fps!r}")
        if self.projector_type not in PROJECTOR_DOWNSAMPLE:
            raise ConfigError(f"unknown projector_type {self.projector_type!r}; known: {sorted(PROJECTOR_DOWNSAMPLE)}")
        if self.image_aspect_ratio not in ("dynamic_s2", "dynamic", "resize"):
            raise ConfigError(
                f"unknown image_aspect_ratio {self.image_aspect_ratio!r}; known: dynamic_s2, dynamic, resize"
            )
        if self.vision.image_size % self.vision.patch_size:
            raise ConfigError(
                f"vision.image_size {self.vision.image_size} is not a multiple of patch_size {self.vision.patch_size}"
            )
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ConfigError(f"need 1 <= min_tiles <= max_tiles, got {self.min_tiles}, {self.max_tiles}")
        if self.dynamic_s2:
            scales = self.s2_scales
            if not scales or scales[0] != self.tile_size or any(s % scales[0] for s in scales):
                raise ConfigError(
                    f"s2_scales {list(scales)} must start at the tile size {self.tile_size} and be multiples of it"
                )
            if list(scales) != sorted(set(scales)):
                raise ConfigError(f"s2_scales {list(scales)} must be strictly increasing")
            if (scales[-1] // scales[0]) ** 2 > self.max_tiles:
                raise ConfigError(
                    f"max_tiles {self.max_tiles} is below the {(scales[-1] // scales[0]) ** 2} tiles of the "
                    f"largest S2 scale {scales[-1]}"
                )
        if self.num_video_frames < 1 or self.video_pool_size < 1:
            raise ConfigError("num_video_frames and video_pool_size must be >= 1")
        if self.fps < 0:
            raise ConfigError(f"fps must be >= 0, got {self.fps}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["vision"]["image_mean"] = list(self.vision.image_mean)
        out["vision"]["image_std"] = list(self.vision.image_std)
        out["s2_scales"] = list(self.s2_scales)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NVILAConfig:
        """Build from a dict (e.g. YAML); unknown keys are named in the error."""
        return cls(**_known(cls, data, "config"))

    def replace(self, **changes: Any) -> NVILAConfig:
        """A copy with top-level fields changed (validated)."""
        return NVILAConfig.from_dict({**self.to_dict(), **changes})

    def with_overrides(self, overrides: dict[str, Any]) -> NVILAConfig:
        """A copy with fields changed, where a dict for `vision` / `text` changes only the keys it names."""
        base = self.to_dict()
        for key, value in overrides.items():
            base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return NVILAConfig.from_dict(base)


def _known(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {where} keys: {', '.join(unknown)}")
    return dict(data)


#: The official encoder that averages groups of frames: `pool_sizes` [[t, h, w]] (NVILA-8B-Video: [[8, 1, 1]]).
TSP_VIDEO_ENCODER = "llava.model.encoders.TSPVideoEncoder"


def video_pool_size_of(encoder: dict[str, Any]) -> int:
    """Frames averaged together, from an official `video_encoder` entry (1 for the basic encoder)."""
    if encoder.get("_target_") != TSP_VIDEO_ENCODER:
        return 1
    sizes = encoder.get("pool_sizes") or [[1, 1, 1]]
    if len(sizes) != 1 or list(sizes[0][1:]) != [1, 1]:
        raise ConfigError(f"unsupported video pooling {sizes}: only one [t, 1, 1] temporal pool is implemented")
    return int(sizes[0][0])


def video_encoder_of(pool_size: int) -> dict[str, Any] | None:
    """The official `video_encoder` entry averaging `pool_size` frames (None: the basic encoder)."""
    return {"_target_": TSP_VIDEO_ENCODER, "pool_sizes": [[pool_size, 1, 1]]} if pool_size > 1 else None


def from_official_configs(
    top: dict[str, Any],
    llm: dict[str, Any],
    tower: dict[str, Any],
    projector: dict[str, Any],
    preprocessor: dict[str, Any],
    name: str,
) -> NVILAConfig:
    """The `NVILAConfig` of the official configs: the top `config.json`, the LLM's (Qwen2), the tower's (SigLIP), the
    projector's and the image processor's. Raises `KeyError` for a missing required key, `ConfigError` for an invalid
    value and `TypeError` / `ValueError` for a value of the wrong type (callers name the file)."""
    rope = llm.get("rope_parameters") or {}  # transformers 5.x writes rope_theta inside rope_parameters
    text = TextConfig(
        vocab_size=llm["vocab_size"],
        hidden_size=llm["hidden_size"],
        intermediate_size=llm["intermediate_size"],
        num_hidden_layers=llm["num_hidden_layers"],
        num_attention_heads=llm["num_attention_heads"],
        num_key_value_heads=llm.get("num_key_value_heads") or llm["num_attention_heads"],
        rms_norm_eps=llm.get("rms_norm_eps", 1e-6),
        rope_theta=llm.get("rope_theta") or rope.get("rope_theta", 1e6),
        max_position_embeddings=llm.get("max_position_embeddings", 32768),
        tie_word_embeddings=llm.get("tie_word_embeddings", False),
        model_max_length=llm.get("model_max_length", llm.get("max_position_embeddings", 32768)),
    )
    vision = VisionConfig(
        hidden_size=tower["hidden_size"],
        intermediate_size=tower["intermediate_size"],
        num_hidden_layers=tower["num_hidden_layers"],
        num_attention_heads=tower["num_attention_heads"],
        image_size=tower["image_size"],
        patch_size=tower["patch_size"],
        layer_norm_eps=tower.get("layer_norm_eps", 1e-6),
        hidden_act=tower.get("hidden_act", "gelu_pytorch_tanh"),
        image_mean=tuple(preprocessor.get("image_mean", (0.5, 0.5, 0.5))),
        image_std=tuple(preprocessor.get("image_std", (0.5, 0.5, 0.5))),
    )
    scales = top.get("s2_scales") or "448,896,1344"
    if isinstance(scales, str):
        scales = [int(s) for s in scales.split(",")]
    return NVILAConfig(
        vision=vision,
        text=text,
        projector_type=projector.get("mm_projector_type") or top["mm_projector"],
        image_aspect_ratio=top.get("image_aspect_ratio") or "resize",
        s2_scales=tuple(scales),
        min_tiles=top.get("min_tiles") or 1,
        max_tiles=top.get("max_tiles") or 12,
        select_layer=top.get("mm_vision_select_layer", -2),
        num_video_frames=top.get("num_video_frames") or 8,
        video_pool_size=video_pool_size_of(top.get("video_encoder") or {}),
        fps=top.get("fps") or 0.0,
        num_time_tokens=top.get("num_time_tokens") or 0,
        time_token_format=top.get("time_token_format") or "<t{t}>",
        media_end_text=top.get("media_end_text") or "\n",
        image_token_id=top.get("image_token_id"),
        video_token_id=top.get("video_token_id"),
        name=name,
    )


# ---- presets ----------------------------------------------------------------------------------------
def _nvila_8b() -> NVILAConfig:
    return NVILAConfig(name="nvila-8b")


def _nvila_8b_video() -> NVILAConfig:
    return NVILAConfig(name="nvila-8b-video", num_video_frames=256, video_pool_size=8, num_time_tokens=100)


def _lite(name: str, text: TextConfig) -> NVILAConfig:
    """An NVILA-Lite model: dynamic tiling and the 3x3 projector around the LLM `text`."""
    return NVILAConfig(name=name, text=text, projector_type="mlp_downsample_3x3_fix", image_aspect_ratio="dynamic")


def _nvila_lite_8b() -> NVILAConfig:
    return _lite("nvila-lite-8b", TextConfig())


def _nvila_lite_2b() -> NVILAConfig:
    text = TextConfig(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return _lite("nvila-lite-2b", text)


def _qwen25_14b() -> TextConfig:
    """The Qwen2.5-14B sizes of NVILA-15B and NVILA-Lite-15B (their tower is the same SigLIP SO400M)."""
    return TextConfig(
        vocab_size=152064,
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=48,
        num_attention_heads=40,
        num_key_value_heads=8,
    )


def _nvila_15b() -> NVILAConfig:
    return NVILAConfig(name="nvila-15b", text=_qwen25_14b())


def _nvila_lite_15b() -> NVILAConfig:
    return _lite("nvila-lite-15b", _qwen25_14b())


def _tiny_vision() -> VisionConfig:
    """A 32-wide SigLIP on 112 px tiles (8 x 8 patches): the real geometry at a size tests run in milliseconds."""
    return VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=112
    )


def _tiny_text() -> TextConfig:
    return TextConfig(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        model_max_length=8192,
    )


def _tiny() -> NVILAConfig:
    return NVILAConfig(name="tiny", vision=_tiny_vision(), text=_tiny_text(), s2_scales=(112, 224, 336))


def _tiny_lite() -> NVILAConfig:
    return NVILAConfig(
        name="tiny-lite",
        vision=_tiny_vision(),
        text=_tiny_text(),
        projector_type="mlp_downsample_3x3_fix",
        image_aspect_ratio="dynamic",
    )


PRESETS: dict[str, Callable[[], NVILAConfig]] = {
    "nvila-8b": _nvila_8b,
    "nvila-8b-video": _nvila_8b_video,
    "nvila-lite-8b": _nvila_lite_8b,
    "nvila-lite-2b": _nvila_lite_2b,
    "nvila-15b": _nvila_15b,
    "nvila-lite-15b": _nvila_lite_15b,
    "tiny": _tiny,
    "tiny-lite": _tiny_lite,
}


def from_name(name: str) -> NVILAConfig:
    """The config of a named preset (real sizes, or `tiny*` for tests and CPU demos)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
