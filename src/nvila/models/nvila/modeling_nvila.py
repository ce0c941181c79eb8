"""`NVILAForConditionalGeneration`: SigLIP tower -> projector -> Qwen2, with media embedded in the prompt.

Owns: turning tiles into visual embeddings (`get_image_features`), placing them on the prompt's media
token positions (one `masked_scatter`), the training forward (loss where labels != -100), transformers' `generate()`
hooks (media on the prefill only) and `from_pretrained` (through `nvila.loader`). Does not own pixels, tokenizers
or text (see `processing`, `pipeline`); decoding is transformers' `generate()` (the engine has its own loop).

The prompt holds one media token id per visual embedding (the processor expands each placeholder with
pure arithmetic from `geometry`), so fusing is a single masked scatter checked against the feature count.
Shapes: b batch, l sequence, n tiles, t tokens per tile, h LLM width.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import Cache, GenerationMixin, PreTrainedModel, Qwen2ForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.configuration_pretrained import (
    MODEL_TYPE_OF_PROJECTOR,
    NVILALitePretrainedConfig,
    NVILAOfficialPretrainedConfig,
    NVILAPretrainedConfig,
)
from nvila.models.nvila.dynamic_s2 import map_to_tiles, merge_scales, tiles_to_map
from nvila.models.nvila.geometry import BlockSize, tiles_per_item
from nvila.models.nvila.projector import Projector
from nvila.models.nvila.vision_tower import VisionTower
from nvila.prompt import IGNORE_INDEX

#: `forward` arguments that carry media: given to the first forward of `generate` only.
MEDIA_INPUTS = ("pixel_values", "image_block_sizes", "video_pixel_values", "video_frame_counts")


class NVILAForConditionalGeneration(PreTrainedModel, GenerationMixin):
    """The NVILA vision-language model, a transformers `PreTrainedModel` with `generate()`.

    Attributes follow the official checkpoint's three parts: `vision_tower`, `mm_projector`, `llm`. `config` is the
    transformers config (`NVILAPretrainedConfig`); `nvila_config` the typed `NVILAConfig` the code reads. Build it
    from either; load it with `from_pretrained` (any layout or hub id, through `nvila.load`).
    """

    config_class = NVILAPretrainedConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer", "SiglipEncoderLayer", "Projector"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: NVILAPretrainedConfig | NVILAConfig) -> None:
        if isinstance(config, NVILAConfig):
            nvila_config, config = config, NVILAPretrainedConfig.from_nvila(config)
        else:
            nvila_config = config.to_nvila()
        super().__init__(config)
        self.nvila_config = nvila_config
        self.vision_tower = VisionTower(config.vision_config, nvila_config.select_layer)
        self.mm_projector = Projector(nvila_config)
        self.llm = Qwen2ForCausalLM(config.text_config)
        self.post_init()

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any
    ) -> NVILAForConditionalGeneration:
        """Load a model from a folder in the official or HF layout, or a hub id (`nvila.loader.load_pretrained`:
        `dtype`, `device_map`, `attn_implementation`, `revision`, `cache_dir`, `local_files_only`, `token`).

        The class is the checkpoint's (`NVILAForConditionalGeneration` or `NVILALiteForConditionalGeneration`),
        whichever class it is called on."""
        from nvila.loader import load_pretrained

        if args:
            raise TypeError("from_pretrained takes the model and keyword arguments only")
        return load_pretrained(pretrained_model_name_or_path, **kwargs)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write the model into `save_directory` in the HF layout (`nvila.convert.save_pretrained.save_model`); save
        the processor there too (`processor.save_pretrained`) for a folder that loads. One safetensors file."""
        from nvila.convert.save_pretrained import check_local, save_model

        check_local(push_to_hub)
        if is_main_process:
            save_model(self, save_directory)

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing: the tower and the LLM initialise themselves (transformers), the projector at construction."""

    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.llm.get_output_embeddings()

    @property
    def device(self) -> torch.device:
        return self.llm.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.lm_head.weight.dtype

    # ---- media -> embeddings ------------------------------------------------------------------------
    def get_image_features(
        self, pixel_values: torch.Tensor, block_sizes: Sequence[BlockSize] | None = None
    ) -> torch.Tensor:
        """Visual embeddings of every image item, concatenated in order.

        pixel_values: [n, 3, s, s] tiles of all items. For a Dynamic-S2 model each item is either one
        multi-scale image with its (rows, cols) block size, or a single resized tile (None); otherwise
        every tile is its own item (dynamic tiling gives every tile its own placeholder).
        Returns [sum of item tokens, h]: an S2 image yields rows*cols*t tokens in raster order over the
        whole image, any other item t tokens.
        """
        n = pixel_values.shape[0]
        block_sizes = list(block_sizes) if block_sizes is not None else [None] * n
        counts = tiles_per_item(self.nvila_config, block_sizes, n)
        if sum(counts) != n:
            raise ValueError(f"block sizes describe {sum(counts)} tiles but pixel_values holds {n}")
        features = self.vision_tower(pixel_values)  # [n, p*p, c]
        if not self.nvila_config.dynamic_s2:
            return self.mm_projector(features).flatten(0, 1)  # [n*t, h]
        return self.project_multiscale(*self.multiscale_tiles(features, block_sizes, counts))

    def multiscale_tiles(
        self, features: torch.Tensor, block_sizes: Sequence[BlockSize], counts: Sequence[int]
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Dynamic-S2: the tower features [n, p*p, c] of items of `counts` tiles -> the projector's input tiles
        [sum r*c, p*p, scales*c] (each image's scales fused on the largest grid; a resized tile's features fill
        every scale slot) and each item's (rows, cols) grid."""
        scales = self.nvila_config.s2_scales
        tiles, grids = [], []
        for item, block in zip(features.split(list(counts)), block_sizes):
            if block is None:
                tiles.append(item.repeat(1, 1, len(scales)))  # [1, p*p, 3c]
                grids.append((1, 1))
            else:
                tiles.append(map_to_tiles(merge_scales(item, scales, block), *block))  # [r*c, p*p, 3c]
                grids.append(block)
        return torch.cat(tiles), grids

    def project_multiscale(self, tiles: torch.Tensor, grids: Sequence[tuple[int, int]]) -> torch.Tensor:
        """`multiscale_tiles`' output -> [sum of item tokens, h]: each item's tokens in raster order over it."""
        projected = self.mm_projector(tiles)  # [sum r*c, t, h]
        out = []
        for item, (rows, cols) in zip(projected.split([r * c for r, c in grids]), grids):
            out.append(tiles_to_map(item, rows, cols).flatten(1).T)  # [r*c*t, h] raster over the image
        return torch.cat(out)

    def get_video_features(
        self, pixel_values: torch.Tensor, frame_counts: Sequence[int], pool_size: int | None = None
    ) -> torch.Tensor:
        """Visual embeddings of videos, concatenated in order.

        pixel_values: [f, 3, s, s] the frames of all videos (one tile each); frame_counts: frames per video.
        Each video's [frames, t, h] projector output is averaged over groups of `pool_size` consecutive
        frames (default: the config's; a shorter last group is averaged on its own).
        Returns [sum of groups * t, h], frame-group major.
        """
        if sum(frame_counts) != pixel_values.shape[0]:
            raise ValueError(f"frame counts sum to {sum(frame_counts)} but pixel_values holds {pixel_values.shape[0]}")
        pool = self.nvila_config.video_pool_size if pool_size is None else pool_size
        features = self.get_image_features(pixel_values, [None] * pixel_values.shape[0])
        per_frame = features.reshape(pixel_values.shape[0], -1, features.shape[-1])  # [f, t, h]
        out = []
        for video in per_frame.split(list(frame_counts)):
            groups = [g.mean(dim=0) for g in video.split(pool)]  # each [t, h]
            out.append(torch.cat(groups))
        return torch.cat(out)

    def _scatter(
        self, embeds: torch.Tensor, input_ids: torch.Tensor, token_id: int, features: torch.Tensor | None, kind: str
    ) -> torch.Tensor:
        mask = input_ids == token_id
        n_positions = int(mask.sum())
        n_features = 0 if features is None else features.shape[0]
        if n_features != n_positions:
            raise ValueError(
                f"the prompt has {n_positions} {kind} token positions but the {kind}s give "
                f"{n_features} visual embeddings"
            )
        if features is None:
            return embeds
        return embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.device, embeds.dtype))

    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_block_sizes: Sequence[BlockSize] | None = None,
        video_pixel_values: torch.Tensor | None = None,
        video_frame_counts: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """[b, l] ids -> [b, l, h] embeddings; `<image>` / `<vila/video>` positions hold visual embeddings."""
        tower = self.vision_tower.device
        images = None if pixel_values is None else self.get_image_features(pixel_values.to(tower), image_block_sizes)
        videos = None
        if video_pixel_values is not None:
            videos = self.get_video_features(video_pixel_values.to(tower), video_frame_counts or [])
        return self.embed_features(input_ids, images, videos)

    def embed_features(
        self, input_ids: torch.Tensor, image_features: torch.Tensor | None, video_features: torch.Tensor | None
    ) -> torch.Tensor:
        """[b, l] ids + visual embeddings already computed ([image tokens, h], [video tokens, h]) -> [b, l, h]."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        embeds = self._scatter(embeds, input_ids, self.nvila_config.image_token_id, image_features, "image")
        return self._scatter(embeds, input_ids, self.nvila_config.video_token_id, video_features, "video")

    # ---- forward ------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_block_sizes: Sequence[BlockSize] | None = None,
        video_pixel_values: torch.Tensor | None = None,
        video_frame_counts: Sequence[int] | None = None,
        labels: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits (and the mean next-token loss over labels != -100 when `labels` is given).

        input_ids, attention_mask, position_ids, labels: [b, l]; media positions never carry a loss.
        Videos: all frames in `video_pixel_values` [f, 3, s, s], `video_frame_counts` frames per video.
        `kwargs` go to the LLM (transformers' `output_attentions`, `return_dict`...).
        """
        embeds = self.embed(input_ids, pixel_values, image_block_sizes, video_pixel_values, video_frame_counts)
        if labels is not None:
            media = (input_ids == self.nvila_config.image_token_id) | (input_ids == self.nvila_config.video_token_id)
            labels = labels.masked_fill(media, IGNORE_INDEX)
        return self.llm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            cache=cache,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def prepare_inputs_for_generation(self, *args: Any, is_first_iteration: bool = False, **kwargs: Any) -> dict:
        """transformers' `generate` hook: the media go into the first forward only (the prefill), as the prompt's
        media positions are in the cache after it."""
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and inputs.get("use_cache", True):
            for key in MEDIA_INPUTS:
                inputs.pop(key, None)
        return inputs


class NVILALiteForConditionalGeneration(NVILAForConditionalGeneration):
    """NVILA-Lite (dynamic tiling, 3x3 projector): the class of the `nvila_lite` model type, the same model."""

    config_class = NVILALitePretrainedConfig


class LlavaLlamaModel(NVILAForConditionalGeneration):
    """The official layout's architecture name (`llava_llama`), for `AutoModel` on an official folder; loading
    gives the checkpoint's class (`NVILAForConditionalGeneration` or `NVILALiteForConditionalGeneration`)."""

    config_class = NVILAOfficialPretrainedConfig


#: Model type -> model class, as registered with transformers' Auto classes.
MODEL_CLASSES: dict[str, type[NVILAForConditionalGeneration]] = {
    "nvila": NVILAForConditionalGeneration,
    "nvila_lite": NVILALiteForConditionalGeneration,
    "llava_llama": LlavaLlamaModel,
}


def model_class_of(cfg: NVILAConfig) -> type[NVILAForConditionalGeneration]:
    """The class of a model of `cfg`: NVILA-Lite for the 3x3 projector, NVILA otherwise."""
    return MODEL_CLASSES[MODEL_TYPE_OF_PROJECTOR[cfg.projector_type]]
