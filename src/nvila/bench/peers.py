"""Contenders of `nvila bench`: NVILA, NVILA-Lite and peer VLMs from transformers, all with random weights.

Owns: building each model at a benchmark size with ONE shared Qwen2 text config (so only the visual path
differs), turning a case (an image size, or a frame count) into that model's preprocessed inputs, and the
calls the runner makes: `encode` (the visual path alone; checks counts), `prefill` (inputs -> logits of the first
token; `visual_modules` are timed inside it) and `step` (one decode step with the KV cache). Does not own timing
or reports (`runner`, `report`).

Images go through each model's own image processor and placeholder expansion (the PIL back-ends; the
processors are built without video processors, which need torchvision, absent beside CPU torch).
Videos are built directly at the shapes each model's video processor would produce, with the placeholder
counts of its processor's formula. Every count is checked against the model's features by the runner.
Shapes: n tiles or frames, s tile side, t visual tokens, h LLM width, v vocabulary.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import (
    DynamicCache,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionProcessor,
    PreTrainedTokenizerBase,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    SiglipVisionConfig,
)
from transformers.initialization import no_init_weights
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil
from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLTextConfig, Qwen2VLVisionConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

from nvila.bench import MODEL_NAMES, REAL_WIDTH_SIZES, SIZES, VARIANTS
from nvila.errors import ConfigError
from nvila.factory import random_pretrained, sample_tokenizer
from nvila.models.nvila.configuration_nvila import NVILAConfig, TextConfig, VisionConfig, from_name
from nvila.models.nvila.configuration_pretrained import qwen2_config
from nvila.models.nvila.processing_nvila import ModelInputs
from nvila.models.nvila.tokenization_nvila import format_chat
from nvila.quant.smooth import DEFAULT_ALPHA, w8a8_quantize

try:  # InternVL is in transformers >= 4.52; the bench runs without it
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig
except ImportError:  # pragma: no cover - depends on the installed transformers
    InternVLForConditionalGeneration = None

#: The question every prompt asks (the text part is identical for all models).
QUESTION = "Describe this image in detail."
#: Source size of benchmark video frames (each model resizes them its own way).
VIDEO_FRAME_SIZE = (640, 360)
#: The name suffix of a variant with `nvila quantize`'s W8A8 vision tower.
W8A8_SUFFIX = "-w8a8"


@dataclass(frozen=True)
class TowerSize:
    """Width and depth of a vision tower; the patch size and tile geometry stay the real ones."""

    hidden: int
    intermediate: int
    layers: int
    heads: int


#: At tiny/small sizes every tower has the same width and depth, so differences come from geometry.
SMALL_TOWERS = {"tiny": TowerSize(32, 64, 2, 2), "small": TowerSize(64, 256, 2, 2)}
#: Real towers: SigLIP SO400M (448 px for NVILA, 384 px for LLaVA-OV), Qwen2-VL's ViT-675M, InternViT-300M.
FULL_TOWERS = {
    "nvila": TowerSize(1152, 4304, 27, 16),
    "nvila-lite": TowerSize(1152, 4304, 27, 16),
    "qwen2-vl": TowerSize(1280, 5120, 32, 16),
    "llava-onevision": TowerSize(1152, 4304, 26, 16),
    "internvl": TowerSize(1024, 4096, 24, 16),
}


def check_size(size: str) -> None:
    if size not in SIZES:
        raise ConfigError(f"unknown bench size {size!r}; known: {', '.join(SIZES)}")


def text_config(size: str) -> TextConfig:
    """The Qwen2 text config every model of this size shares.

    full: NVILA-8B's LLM (Qwen2.5-7B sizes); 2b: NVILA-Lite-2B's (Qwen2.5-1.5B). small/tiny: a few narrow
    layers, with as many KV heads as query heads (CPU torch's SDPA is an order of magnitude slower with grouped
    KV heads at these sizes, which would swamp decode times). The position limit is raised so that long videos
    run (the released models stop at 32k tokens; longer prompts only show scaling).
    """
    check_size(size)
    long = {"max_position_embeddings": 131072, "model_max_length": 131072}
    if size == "full":
        return TextConfig(**long)
    if size == "2b":  # NVILA-Lite-2B's Qwen2.5-1.5B, with the LM head untied, as every peer builds it
        return dataclasses.replace(from_name("nvila-lite-2b").text, tie_word_embeddings=False, **long)
    if size == "small":
        return TextConfig(
            vocab_size=544,
            hidden_size=128,
            intermediate_size=384,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=2,
            **long,
        )
    return TextConfig(
        vocab_size=544,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        **long,
    )


def tower_size(name: str, size: str) -> TowerSize:
    check_size(size)
    return FULL_TOWERS[name] if size in REAL_WIDTH_SIZES else SMALL_TOWERS[size]


# ---- inputs ------------------------------------------------------------------------------------------
@dataclass
class BenchInputs:
    """One prompt with its media, preprocessed for one model: what time-to-first-token starts from."""

    tensors: dict[str, Any]  #: the model's keyword arguments (ids, pixels, grids, ...)
    visual_tokens: int  #: LLM positions the visual features fill (the prompt's placeholder count)
    tower_patches: int  #: patch tokens through the vision tower (all tiles / frames)
    prompt_tokens: int  #: LLM sequence length at prefill
    video: bool = False

    def to(self, device: torch.device, dtype: torch.dtype) -> BenchInputs:
        """Tensors moved to `device`; floating-point ones (pixels) cast to `dtype`."""
        moved = {}
        for key, value in self.tensors.items():
            if isinstance(value, torch.Tensor):
                value = value.to(device, dtype) if value.is_floating_point() else value.to(device)
            moved[key] = value
        return replace(self, tensors=moved)


def _chat(content: str) -> str:
    """The same ChatML prompt (system line, one user turn, generation prompt) for every model."""
    return format_chat([{"role": "user", "content": content}])


def _expand(ids: torch.Tensor, token_id: int, spans: Sequence[Sequence[int]]) -> torch.Tensor:
    """[1, l] ids whose k-th `token_id` becomes spans[k] -> [1, l'] (placeholder expansion on ids)."""
    flat = ids[0].tolist()
    positions = [i for i, t in enumerate(flat) if t == token_id]
    if len(positions) != len(spans):
        raise ValueError(f"the prompt has {len(positions)} placeholders for {len(spans)} media items")
    out, start = [], 0
    for pos, span in zip(positions, spans):
        out += flat[start:pos] + list(span)
        start = pos + 1
    return torch.tensor([out + flat[start:]], dtype=torch.long)


def sample_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB image of the case's size (content does not change any model's cost)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def random_frames(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """[n, 3, s, s] normalised-looking random frames."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=generator)


@functools.lru_cache(maxsize=1)
def _base_tokenizer() -> PreTrainedTokenizerBase:
    return sample_tokenizer()


def bench_tokenizer(added: Sequence[str] = (), named: dict[str, str] | None = None) -> PreTrainedTokenizerBase:
    """The small built-in tokenizer plus a model's special tokens.

    `named` tokens also become tokenizer attributes (`<attr>` and `<attr>_id`), as the multimodal
    tokenizers on the Hub declare them and some processors (InternVL) read them.
    """
    tokenizer = copy.deepcopy(_base_tokenizer())
    named = named or {}
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [*added, *named.values()]}, replace_extra_special_tokens=False
    )
    for attr, token in named.items():
        setattr(tokenizer, attr, token)
        setattr(tokenizer, f"{attr}_id", tokenizer.convert_tokens_to_ids(token))
    return tokenizer


@contextlib.contextmanager
def _building(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly on `device` in `dtype` (a full-size model never exists in fp32 on CPU)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _n_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


# ---- the common interface ----------------------------------------------------------------------------
@dataclass
class ModelInfo:
    """What the report says about a contender."""

    name: str
    label: str
    geometry: str  #: how images and videos become tokens
    tower: str  #: tower type and size
    visual_params: int  #: tower + projector (+ newline embeddings)
    llm_params: int
    extra: dict[str, Any] = field(default_factory=dict)


class BenchModel(ABC):
    """A model under test: its inputs for a case and the three timed calls."""

    name: str
    label: str
    geometry: str

    def __init__(self, model: nn.Module, text: TextConfig, tower: str, llm_modules: Sequence[nn.Module]) -> None:
        self.model = model.eval()
        self.text = text
        self.tower = tower
        self._llm_modules = list(llm_modules)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def visual_modules(self) -> list[nn.Module]:
        """The visual path: the modules beside the LLM in the model's base (tower, projector)."""
        return [child for child in self.model.base_model.children() if child not in self._llm_modules]

    def info(self) -> ModelInfo:
        llm = _n_params(*self._llm_modules)
        return ModelInfo(self.name, self.label, self.geometry, self.tower, _n_params(self.model) - llm, llm)

    @abstractmethod
    def image_inputs(self, width: int, height: int) -> BenchInputs:
        """A prompt with one `width` x `height` image, through the model's own processor."""

    @abstractmethod
    def video_inputs(self, frames: int) -> BenchInputs:
        """A prompt with one video of `frames` sampled frames of `VIDEO_FRAME_SIZE`."""

    @abstractmethod
    def encode(self, inputs: BenchInputs) -> torch.Tensor:
        """The visual path alone: [t, h] embeddings that fill the prompt's visual positions."""

    @abstractmethod
    def prefill(self, inputs: BenchInputs, cache: DynamicCache) -> torch.Tensor:
        """Visual path + LLM prefill: [1, v] logits of the last prompt position; fills `cache`."""

    def step(self, token: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """One decode step: [1] token -> [1, v] logits (batch of one, no padding: no attention mask)."""
        return self.model(input_ids=token[:, None], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]

    def new_cache(self) -> DynamicCache:
        return DynamicCache()


# ---- NVILA ---------------------------------------------------------------------------------------------
def nvila_config(name: str, size: str) -> NVILAConfig:
    """`nvila-8b` (Dynamic-S2, 2x2) or `nvila-lite-8b` (tiling, 3x3) geometry with the bench's widths; videos
    pooled as the video model does (NVILA: nvila-8b-video's 8x; NVILA-Lite: its preset's, none)."""
    preset = from_name("nvila-8b" if name == "nvila" else "nvila-lite-8b")
    video_preset = from_name("nvila-8b-video" if name == "nvila" else "nvila-lite-8b")
    tower = tower_size(name, size)
    vision = VisionConfig(
        hidden_size=tower.hidden,
        intermediate_size=tower.intermediate,
        num_hidden_layers=tower.layers,
        num_attention_heads=tower.heads,
    )
    data = preset.to_dict()
    data.update(vision=vision, text=text_config(size), name=f"{preset.name} ({size})")
    data.update(video_pool_size=video_preset.video_pool_size)
    return NVILAConfig(**data)


class NVILABench(BenchModel):
    """NVILA or NVILA-Lite: images and videos through `NVILAProcessor` and the model's own feature paths."""

    def __init__(self, name: str, size: str, device: torch.device, dtype: torch.dtype, seed: int) -> None:
        base = name.removesuffix(W8A8_SUFFIX)
        w8a8 = base != name
        cfg = nvila_config(base, size)
        model, self.processor = random_pretrained(
            cfg, seed=seed, device=device, dtype=dtype, tokenizer=bench_tokenizer()
        )
        self.name, self.cfg = name, cfg
        self.pool = cfg.video_pool_size
        if base == "nvila":
            self.label = "NVILA"
            self.geometry = (
                f"Dynamic-S2 (448/896/1344, 9-12 tiles at the top scale), 2x2 projector; video: 1 tile/frame, "
                f"{self.pool}x temporal pooling"
            )
        else:
            self.label = "NVILA-Lite"
            self.geometry = "dynamic tiling (1-12 tiles + thumbnail), 3x3 projector; video: 1 tile/frame, no pooling"
        if w8a8:
            self.label += " (W8A8 tower)"
            self.geometry += f"; W8A8 tower (SmoothQuant alpha {DEFAULT_ALPHA}, as `nvila quantize --vision w8a8`)"
        tower = cfg.vision
        super().__init__(
            model,
            cfg.text,
            f"SigLIP {tower.hidden_size}x{tower.num_hidden_layers}L @ {tower.image_size}px",
            [model.llm],
        )
        if w8a8:
            self._quantize_tower()

    @torch.no_grad()
    def _quantize_tower(self) -> None:
        """`nvila quantize`'s W8A8 tower, calibrated on the tiles of one 448x448 sample image."""
        tower = self.model.vision_tower
        pixels = self.image_inputs(448, 448).tensors["pixel_values"].to(self.device, self.dtype)
        w8a8_quantize(tower, tower.model.encoder.layers, [pixels], alpha=DEFAULT_ALPHA)

    def image_inputs(self, width: int, height: int) -> BenchInputs:
        return self._inputs(self.processor(QUESTION, [sample_image(width, height)]), video=False)

    def video_inputs(self, frames: int) -> BenchInputs:
        clip = [sample_image(*VIDEO_FRAME_SIZE, seed=k) for k in range(frames)]
        return self._inputs(self.processor(QUESTION, videos=[clip]), video=True)

    def _inputs(self, batch: ModelInputs, video: bool) -> BenchInputs:
        ids = batch.input_ids
        tiles = batch.video_pixel_values if video else batch.pixel_values
        p = self.cfg.vision.patches_per_side
        return BenchInputs(
            {k: v for k, v in batch.to_model_kwargs().items() if k != "attention_mask"},
            visual_tokens=int((ids == (self.cfg.video_token_id if video else self.cfg.image_token_id)).sum()),
            tower_patches=tiles.shape[0] * p * p,
            prompt_tokens=ids.shape[1],
            video=video,
        )

    def encode(self, inputs: BenchInputs) -> torch.Tensor:
        t = inputs.tensors
        if inputs.video:
            return self.model.get_video_features(t["video_pixel_values"], t["video_frame_counts"])
        return self.model.get_image_features(t["pixel_values"], t["image_block_sizes"])

    def prefill(self, inputs: BenchInputs, cache: DynamicCache) -> torch.Tensor:
        t = inputs.tensors
        embeds = self.model.embed(
            t["input_ids"], t["pixel_values"], t["image_block_sizes"], t["video_pixel_values"], t["video_frame_counts"]
        )  # checks the prompt's media positions against the features
        out = self.model.llm(inputs_embeds=embeds, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]

    def step(self, token: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        return self.model.llm(input_ids=token[:, None], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]


# ---- processors without video processors ----------------------------------------------------------------
# transformers' multimodal processors take a video processor, which needs torchvision. These subclasses
# declare only (image_processor, tokenizer), so ProcessorMixin neither asks for nor checks a video processor.
class _Qwen2VLImageProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _LlavaOnevisionImageProcessor(LlavaOnevisionProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


if InternVLForConditionalGeneration is not None:

    class _InternVLImageProcessor(InternVLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _PeerBench(BenchModel):
    """A transformers VLM: prefill is its own forward, which checks placeholders against features."""

    processor: Any

    def _process_image(self, width: int, height: int, content: str) -> dict[str, torch.Tensor]:
        batch = self.processor(images=[sample_image(width, height)], text=[_chat(content)], return_tensors="pt")
        batch.pop("attention_mask", None)  # batch of one, no padding: every model runs its causal path
        return dict(batch)

    def prefill(self, inputs: BenchInputs, cache: DynamicCache) -> torch.Tensor:
        out = self.model(**inputs.tensors, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]


def _mrope_section(head_dim: int) -> list[int]:
    """Qwen2-VL's (temporal, height, width) split of the rotary half-dimension: 16/24/24 of 64 at head 128."""
    half = head_dim // 2
    return [half // 4, 3 * half // 8, 3 * half // 8]


class Qwen2VLBench(_PeerBench):
    """Qwen2-VL: native resolution (28 px per token after its 2x2 merge), 3D RoPE, videos 2 frames per token."""

    name, label = "qwen2-vl", "Qwen2-VL"
    geometry = "native resolution, 14 px patches, 2x2 merge (28x28 px per token); video: 2 frames per token"
    #: the released Qwen2-VL-7B-Instruct preprocessor: 4 to 16384 tokens per image
    IMAGE_PIXELS = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
    #: transformers' Qwen2-VL video processor defaults: 128 to 768 tokens per frame pair
    VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS = 128 * 28 * 28, 768 * 28 * 28

    def __init__(self, size: str, device: torch.device, dtype: torch.dtype, seed: int) -> None:
        text, tower = text_config(size), tower_size(self.name, size)
        tokenizer = bench_tokenizer(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
        ids = tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
        self.image_token_id, self.video_token_id = ids[2], ids[3]
        head_dim = text.hidden_size // text.num_attention_heads
        config = Qwen2VLConfig(
            vision_config=Qwen2VLVisionConfig(
                depth=tower.layers,
                embed_dim=tower.hidden,
                hidden_size=text.hidden_size,
                mlp_ratio=tower.intermediate // tower.hidden,
                num_heads=tower.heads,
            ),
            text_config=Qwen2VLTextConfig(
                vocab_size=text.vocab_size,
                hidden_size=text.hidden_size,
                intermediate_size=text.intermediate_size,
                num_hidden_layers=text.num_hidden_layers,
                num_attention_heads=text.num_attention_heads,
                num_key_value_heads=text.num_key_value_heads,
                rms_norm_eps=text.rms_norm_eps,
                max_position_embeddings=text.max_position_embeddings,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": text.rope_theta,
                    "mrope_section": _mrope_section(head_dim),
                },
            ),
            vision_start_token_id=ids[0],
            vision_end_token_id=ids[1],
            image_token_id=ids[2],
            video_token_id=ids[3],
            tie_word_embeddings=text.tie_word_embeddings,
        )
        torch.manual_seed(seed)
        with _building(device, dtype):
            model = Qwen2VLForConditionalGeneration(config)
        self.processor = _Qwen2VLImageProcessor(Qwen2VLImageProcessorPil(size=self.IMAGE_PIXELS), tokenizer)
        tower_text = f"Qwen2-VL ViT {tower.hidden}x{tower.layers}L, 14 px patches"
        super().__init__(model, text, tower_text, [model.model.language_model, model.lm_head])

    def image_inputs(self, width: int, height: int) -> BenchInputs:
        tensors = self._process_image(width, height, "<|vision_start|><|image_pad|><|vision_end|>" + QUESTION)
        ids = tensors["input_ids"]
        return BenchInputs(
            tensors,
            visual_tokens=int((ids == self.image_token_id).sum()),
            tower_patches=tensors["pixel_values"].shape[0],
            prompt_tokens=ids.shape[1],
        )

    def video_frame_grid(self) -> tuple[int, int]:
        """(h, w) patches of one frame after the video processor's resize."""
        w, h = VIDEO_FRAME_SIZE
        h, w = smart_resize(h, w, factor=28, min_pixels=self.VIDEO_MIN_PIXELS, max_pixels=self.VIDEO_MAX_PIXELS)
        return h // 14, w // 14

    def video_inputs(self, frames: int) -> BenchInputs:
        gh, gw = self.video_frame_grid()
        gt = -(-frames // 2)  # temporal patch 2: an odd last frame is repeated, as the processor does
        n_tokens = gt * gh * gw // 4
        tokenizer = self.processor.tokenizer
        text = _chat("<|vision_start|><|video_pad|><|vision_end|>" + QUESTION)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        ids = _expand(ids, self.video_token_id, [[self.video_token_id] * n_tokens])
        tensors = {
            "input_ids": ids,
            "pixel_values_videos": torch.randn(gt * gh * gw, 3 * 2 * 14 * 14),  # [patches, c*t*p*p]
            "video_grid_thw": torch.tensor([[gt, gh, gw]]),
            "mm_token_type_ids": (ids == self.video_token_id).long() * 2,  # 0 text, 1 image, 2 video
        }
        return BenchInputs(tensors, n_tokens, gt * gh * gw, ids.shape[1], video=True)

    def encode(self, inputs: BenchInputs) -> torch.Tensor:
        t = inputs.tensors
        if inputs.video:
            out = self.model.model.get_video_features(t["pixel_values_videos"], t["video_grid_thw"])
        else:
            out = self.model.model.get_image_features(t["pixel_values"], t["image_grid_thw"])
        return torch.cat(out.pooler_output)


class LlavaOnevisionBench(_PeerBench):
    """LLaVA-OneVision: anyres-max-9 tiling of 384 px tiles, 729 tokens per tile; videos pooled 2x2 per frame."""

    name, label = "llava-onevision", "LLaVA-OneVision"
    geometry = (
        "anyres_max_9: base 384 px view + up to 6x6 tiles, 729 tokens/tile, unpadded, downscaled above 9 tiles, "
        "+ newline per row; video: 384 px frames, 2x2 pooled to 196 tokens/frame"
    )
    TOKENS_PER_TILE = 729

    def __init__(self, size: str, device: torch.device, dtype: torch.dtype, seed: int) -> None:
        text, tower = text_config(size), tower_size(self.name, size)
        tokenizer = bench_tokenizer(["<video>"])
        self.image_token_id, self.video_token_id = tokenizer.convert_tokens_to_ids(["<image>", "<video>"])
        vision = SiglipVisionConfig(
            hidden_size=tower.hidden,
            intermediate_size=tower.intermediate,
            num_hidden_layers=tower.layers,
            num_attention_heads=tower.heads,
            image_size=384,
            patch_size=14,
            vision_use_head=False,
        )
        config = LlavaOnevisionConfig(
            vision_config=vision,
            text_config=qwen2_config(text),
            image_token_index=self.image_token_id,
            video_token_index=self.video_token_id,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            vision_aspect_ratio="anyres_max_9",
            tie_word_embeddings=text.tie_word_embeddings,
        )
        torch.manual_seed(seed)
        with _building(device, dtype):
            model = LlavaOnevisionForConditionalGeneration(config)
        self.processor = _LlavaOnevisionImageProcessor(
            LlavaOnevisionImageProcessorPil(),
            tokenizer,
            num_image_tokens=self.TOKENS_PER_TILE,
            vision_feature_select_strategy="full",
        )
        tower_text = f"SigLIP {tower.hidden}x{tower.layers}L @ 384px"
        super().__init__(model, text, tower_text, [model.model.language_model, model.lm_head])

    def image_inputs(self, width: int, height: int) -> BenchInputs:
        tensors = self._process_image(width, height, "<image>\n" + QUESTION)
        ids = tensors["input_ids"]
        tiles = image_size_to_num_patches((height, width), self.model.config.image_grid_pinpoints, 384)
        return BenchInputs(
            tensors,
            visual_tokens=int((ids == self.image_token_id).sum()),
            tower_patches=tiles * self.TOKENS_PER_TILE,
            prompt_tokens=ids.shape[1],
        )

    def video_inputs(self, frames: int) -> BenchInputs:
        side = math.ceil(math.isqrt(self.TOKENS_PER_TILE) / 2)
        n_tokens = frames * side * side + 1  # the processor's formula: pooled frames + one newline
        tokenizer = self.processor.tokenizer
        ids = tokenizer(_chat("<video>\n" + QUESTION), add_special_tokens=False, return_tensors="pt").input_ids
        ids = _expand(ids, self.video_token_id, [[self.video_token_id] * n_tokens])
        tensors = {"input_ids": ids, "pixel_values_videos": random_frames(frames, 384)[None]}  # [1, n, 3, s, s]
        return BenchInputs(tensors, n_tokens, frames * self.TOKENS_PER_TILE, ids.shape[1], video=True)

    def encode(self, inputs: BenchInputs) -> torch.Tensor:
        t = inputs.tensors
        if inputs.video:
            return self.model.model.get_video_features(t["pixel_values_videos"]).pooler_output.flatten(0, 1)
        out = self.model.model.get_image_features(
            t["pixel_values"], t["image_sizes"], batch_num_images=t["batch_num_images"]
        )
        return torch.cat(out.pooler_output)


class InternVLBench(_PeerBench):
    """InternVL (3, HF layout): 448 px tiles + thumbnail, pixel shuffle to 256 tokens per tile."""

    name, label = "internvl", "InternVL"
    geometry = "dynamic tiling (1-12 tiles + thumbnail), pixel shuffle 0.5 (256 tokens/tile); video: 1 tile/frame"
    TOKENS_PER_TILE = 256

    def __init__(self, size: str, device: torch.device, dtype: torch.dtype, seed: int) -> None:
        text, tower = text_config(size), tower_size(self.name, size)
        tokenizer = bench_tokenizer(
            named={
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            }
        )
        self.image_token_id = tokenizer.context_image_token_id
        config = InternVLConfig(
            vision_config=InternVLVisionConfig(
                hidden_size=tower.hidden,
                intermediate_size=tower.intermediate,
                num_hidden_layers=tower.layers,
                num_attention_heads=tower.heads,
                image_size=448,
                patch_size=14,
            ),
            text_config=qwen2_config(text),
            image_token_id=self.image_token_id,
            image_seq_length=self.TOKENS_PER_TILE,
            downsample_ratio=0.5,
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
            tie_word_embeddings=text.tie_word_embeddings,
        )
        torch.manual_seed(seed)
        with _building(device, dtype):
            model = InternVLForConditionalGeneration(config)
        image_processor = GotOcr2ImageProcessorPil(
            crop_to_patches=True, min_patches=1, max_patches=12, size={"height": 448, "width": 448}
        )
        self.processor = _InternVLImageProcessor(image_processor, tokenizer, image_seq_length=self.TOKENS_PER_TILE)
        tower_text = f"InternViT {tower.hidden}x{tower.layers}L @ 448px"
        super().__init__(model, text, tower_text, [model.model.language_model, model.lm_head])

    def image_inputs(self, width: int, height: int) -> BenchInputs:
        tensors = self._process_image(width, height, "<IMG_CONTEXT>\n" + QUESTION)
        ids = tensors["input_ids"]
        return BenchInputs(
            tensors,
            visual_tokens=int((ids == self.image_token_id).sum()),
            tower_patches=tensors["pixel_values"].shape[0] * 1024,
            prompt_tokens=ids.shape[1],
        )

    def video_inputs(self, frames: int) -> BenchInputs:
        # the processor's video prompt: "Frame{i}: <img>{256 x <IMG_CONTEXT>}</img>" per frame, joined by newlines
        per_frame = "\n".join(f"Frame{i + 1}: <img><IMG_CONTEXT></img>" for i in range(frames))
        tokenizer = self.processor.tokenizer
        ids = tokenizer(_chat(per_frame + "\n" + QUESTION), add_special_tokens=False, return_tensors="pt").input_ids
        ids = _expand(ids, self.image_token_id, [[self.image_token_id] * self.TOKENS_PER_TILE] * frames)
        tensors = {"input_ids": ids, "pixel_values": random_frames(frames, 448)}
        return BenchInputs(tensors, frames * self.TOKENS_PER_TILE, frames * 1024, ids.shape[1], video=True)

    def encode(self, inputs: BenchInputs) -> torch.Tensor:
        cfg = self.model.config
        out = self.model.model.get_image_features(
            pixel_values=inputs.tensors["pixel_values"],
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        return out.pooler_output.flatten(0, 1)  # [n*256, h]


# ---- registry ------------------------------------------------------------------------------------------
def available_models() -> list[str]:
    """Contender names this installation can build (InternVL needs a transformers that ships it)."""
    return [n for n in MODEL_NAMES if n != "internvl" or InternVLForConditionalGeneration is not None]


def default_models() -> list[str]:
    """What a run without `--models` measures: every available contender, no variants."""
    return [n for n in available_models() if n not in VARIANTS]


def build_model(
    name: str, size: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> BenchModel:
    """A contender with random weights at a bench size."""
    check_size(size)
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    if name not in available_models():
        raise ConfigError(f"model {name!r} needs a transformers version that ships it")
    device = torch.device(device)
    if name.removesuffix(W8A8_SUFFIX) in ("nvila", "nvila-lite"):
        make = functools.partial(NVILABench, name)
    else:
        make = {"qwen2-vl": Qwen2VLBench, "llava-onevision": LlavaOnevisionBench, "internvl": InternVLBench}[name]
    if size not in REAL_WIDTH_SIZES:
        return make(size, device, dtype, seed)
    with no_init_weights():  # real widths: one cheap random pass instead of two initialisations per weight
        bm = make(size, device, dtype, seed)
    fill_random(bm.model, seed)
    return bm


@torch.no_grad()
def fill_random(model: nn.Module, seed: int, std: float = 0.02) -> None:
    """Random weights for a model built without initialisation (timing only; no NaN, no denormals).

    Matrices and embeddings ~ N(0, std); vectors: weights 1 (norms, layer scales), everything else 0 (biases).
    """
    device = next(model.parameters()).device
    if device.type == "meta":  # shapes only
        return
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, param in model.named_parameters():
        if param.dim() > 1:
            param.normal_(0.0, std, generator=generator)
        else:
            param.fill_(1.0 if name.endswith("weight") else 0.0)
