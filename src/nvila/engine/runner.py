"""The model side of the engine: prefill new prompts into KV cache slots, decode one token for many slots.

Owns: the `Runner` protocol the scheduler drives (`prefill`, `decode`, `free`) and `ModelRunner`, which
runs an NVILA model's Qwen2 decoder over a `SlotKVCache`: embeddings with visual features (through the
feature cache), RoPE positions per sequence, attention masks, logits of each sequence's last position,
and the optionally compiled decode step. Does not own sampling, stopping or which request is in which
slot (`core`).

Prefill batches are right-padded: with causal attention a real token never sees the padding after it, so
no mask is needed (sdpa takes its causal fast path) and each prompt's positions are 0..l-1. Decode rows
are slots 0..n-1 (n = highest running slot + 1; slots are handed out lowest first), so the cache is used
through views; a free slot in between decodes a throwaway token at its position 0.
Shapes: b prompts, l padded length, n decode rows, t span of cached positions attended to, h width, v vocab.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch.nn.functional import scaled_dot_product_attention
from torch.nn.utils.rnn import pad_sequence
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from nvila.engine.config import EngineConfig
from nvila.engine.feature_cache import FeatureCache
from nvila.engine.kv_cache import DecodeWrite, PrefillWrite, SlotKVCache
from nvila.engine.media import PromptMedia, encode_media
from nvila.errors import ConfigError
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration

log = logging.getLogger("nvila.engine")

#: Attended spans are rounded up to a multiple of this (fewer distinct shapes for a compiled decode step).
SPAN_STEP = 64


@dataclass
class Prompt:
    """A sequence to prefill into `slot`."""

    slot: int
    input_ids: list[int]
    media: PromptMedia


@runtime_checkable
class Runner(Protocol):
    """What the scheduler needs from a model: `slots` sequences of at most `max_len` positions each."""

    slots: int
    max_len: int
    device: torch.device

    def prefill(self, prompts: list[Prompt], features: FeatureCache) -> torch.Tensor:
        """Cache the prompts in their slots; [b, v] logits of each prompt's last position."""
        ...

    def decode(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """Feed `tokens[i]` to `slots[i]` at that slot's next position; [len(slots), v] logits."""
        ...

    def free(self, slot: int) -> None:
        """Forget the slot's sequence."""
        ...


class ModelRunner:
    """Runs an `NVILAForConditionalGeneration` over a KV cache of `slots` x `max_len` allocated once."""

    def __init__(
        self, model: NVILAForConditionalGeneration, slots: int = 8, max_len: int | None = None, compile: bool = False
    ) -> None:
        text = model.llm.config
        if any(kind != "full_attention" for kind in text.layer_types):
            raise ConfigError("the engine supports full-attention decoders only (no sliding-window layers)")
        self._eager = text._attn_implementation == "eager"
        if not self._eager and text._attn_implementation != "sdpa":
            raise ConfigError(
                f"the engine needs 'sdpa' or 'eager' attention, the model uses {text._attn_implementation!r}"
            )
        context = model.nvila_config.text.model_max_length
        self.model, self.llm = model, model.llm
        self.device = model.device
        self.max_len = min(max_len or context, context)
        self.slots = slots
        head_dim = self.llm.model.layers[0].self_attn.head_dim
        self.cache = SlotKVCache(
            text.num_hidden_layers,
            slots,
            self.max_len,
            text.num_key_value_heads,
            head_dim,
            device=self.device,
            dtype=model.dtype,
        )
        self._decode_step = self._decode_forward
        if compile and self.device.type == "cuda":
            self._decode_step = torch.compile(self._decode_forward, dynamic=True)
        elif compile:
            log.warning("torch.compile of the decode step is for CUDA only; running eagerly on %s", self.device)

    @classmethod
    def from_config(cls, model: NVILAForConditionalGeneration, config: EngineConfig) -> ModelRunner:
        return cls(model, config.max_batch, config.max_len, config.compile)

    # ---- masks --------------------------------------------------------------------------------------
    def _mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """Boolean [.., q, k] (True: may attend) -> the form the attention function takes."""
        if not self._eager:
            return allowed
        return torch.zeros(allowed.shape, device=self.device, dtype=self.model.dtype).masked_fill(
            ~allowed, torch.finfo(self.model.dtype).min
        )

    # ---- prefill ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, prompts: list[Prompt], features: FeatureCache) -> torch.Tensor:
        visual = encode_media(self.model, features, [p.media for p in prompts])
        embeds = [
            self.model.embed_features(torch.tensor([p.input_ids], device=self.device), images, videos)[0]  # [l_i, h]
            for p, (images, videos) in zip(prompts, visual)
        ]
        lengths = torch.tensor([e.shape[0] for e in embeds])
        batch = pad_sequence(embeds, batch_first=True)  # [b, l, h], right-padded with zeros
        b, length = batch.shape[:2]
        positions = torch.arange(length, device=self.device).expand(b, length)  # [b, l]
        mask = None
        if self._eager:  # sdpa without a mask is causal; eager needs one
            causal = torch.ones(length, length, dtype=torch.bool, device=self.device).tril()
            mask = self._mask(causal[None, None])  # [1, 1, l, l]
        slots = torch.tensor([p.slot for p in prompts])
        self.cache.write = PrefillWrite(slots.to(self.device))
        hidden = self.llm.model(
            inputs_embeds=batch,
            attention_mask={"full_attention": mask},
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
        ).last_hidden_state  # [b, l, h]
        self.cache.write = None
        self.cache.lengths[slots] = lengths
        last = hidden[torch.arange(b, device=self.device), (lengths - 1).to(self.device)]  # [b, h]
        return self.llm.lm_head(last)  # [b, v]

    # ---- decode -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        rows = max(slots) + 1
        ids = torch.zeros(rows, dtype=torch.long)
        ids[slots] = torch.tensor(tokens)
        positions = self.cache.lengths[:rows].clone()  # [n] where each row's new token goes
        if int(positions.max()) >= self.max_len:
            raise RuntimeError(f"a sequence is longer than the KV cache's {self.max_len} positions")
        span = min(self.max_len, -(-(int(positions.max()) + 1) // SPAN_STEP) * SPAN_STEP)
        allowed = torch.arange(span)[None, :] <= positions[:, None]  # [n, t]: cached positions and the new one
        embeds = self.llm.get_input_embeddings()(ids.to(self.device))[:, None]  # [n, 1, h]
        mask = self._mask(allowed.to(self.device)[:, None, None, :])  # [n, 1, 1, t]
        logits = self._decode_step(embeds, positions.to(self.device), mask)  # [n, v]
        self.cache.lengths[slots] += 1
        return logits[torch.tensor(slots, device=self.device)]

    def _decode_forward(self, embeds: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One decoder pass for [n, 1, h] embeddings at [n] positions -> [n, v] logits (what gets compiled).

        The decoder's own modules (norms, projections, MLPs, rotary embedding) in the order of transformers'
        `Qwen2DecoderLayer`, called directly: a decode step of a small model is mostly Python overhead, and this
        skips the generic wrappers around the model, its layers and their attention (output capture, mask
        building, kwargs handling). Attention is sdpa over the slot's cached span, GQA heads shared, as
        transformers' sdpa path computes it.
        """
        write = DecodeWrite(positions, mask.shape[-1])
        decoder = self.llm.model
        cos, sin = decoder.rotary_emb(embeds, positions[:, None])
        hidden = embeds
        for index, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            shape = (x.shape[0], 1, -1, attn.head_dim)
            query = attn.q_proj(x).view(shape).transpose(1, 2)  # [n, heads, 1, d]
            key = attn.k_proj(x).view(shape).transpose(1, 2)  # [n, kv heads, 1, d]
            value = attn.v_proj(x).view(shape).transpose(1, 2)
            query, key = apply_rotary_pos_emb(query, key, cos, sin)
            key, value = self.cache.store(key, value, index, write)  # [n, kv heads, span, d]
            out = scaled_dot_product_attention(
                query, key, value, attn_mask=mask, scale=attn.scaling, enable_gqa=attn.num_key_value_groups > 1
            )  # [n, heads, 1, d]
            hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(x.shape[0], 1, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return self.llm.lm_head(decoder.norm(hidden)[:, -1])

    def free(self, slot: int) -> None:
        self.cache.lengths[slot] = 0
