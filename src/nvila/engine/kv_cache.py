"""A preallocated KV cache: `slots` sequences x `max_len` positions per decoder layer, allocated once.

Owns: the K/V buffers, each slot's length, and how one forward writes into them — prefill (a right-padded
batch of new prompts, each into its own slot, attending to itself only) or decode (one token for each of
the first n slots, at that slot's own position, attending to the slot's first `span` positions). Plugs
into transformers' Qwen2 decoder as a `Cache`: its attention layers call `update` after RoPE, with K/V
at KV-head width (GQA heads are repeated by the attention function, not stored). Does not own which slot
holds which request (`core`) or the attention masks (`runner`).

Shapes: s slots, k KV heads, m max_len, d head dim; b prompts, l padded prompt length; n decode rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Cache


@dataclass
class PrefillWrite:
    slots: torch.Tensor  #: [b] slot of each prompt (on the cache's device)


@dataclass
class DecodeWrite:
    positions: torch.Tensor  #: [n] where row i's new token goes in slot i (on the cache's device)
    span: int  #: positions 0..span-1 are returned for attention


class SlotKVCache(Cache):
    """K/V buffers `keys[layer]`, `values[layer]`: [s, k, m, d]; `lengths`: [s] tokens cached per slot (CPU)."""

    def __init__(
        self,
        num_layers: int,
        slots: int,
        max_len: int,
        kv_heads: int,
        head_dim: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(layers=[])
        shape = (slots, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.lengths = torch.zeros(slots, dtype=torch.long)
        self.write: PrefillWrite | DecodeWrite | None = None  #: how the next forward writes (set by the runner)

    @property
    def slots(self) -> int:
        return self.keys[0].shape[0]

    @property
    def max_len(self) -> int:
        return self.keys[0].shape[2]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new K/V ([b, k, l, d] or [n, k, 1, d]); return the K/V to attend to."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        write = self.write
        if isinstance(write, PrefillWrite):
            length = key_states.shape[2]
            keys[write.slots, :, :length] = key_states
            values[write.slots, :, :length] = value_states
            return key_states, value_states  # a new prompt attends to itself only
        if not isinstance(write, DecodeWrite):
            raise RuntimeError("SlotKVCache.write must be set before a forward")
        rows = write.positions.shape[0]
        index = torch.arange(rows, device=keys.device)
        keys[index, :, write.positions] = key_states[:, :, 0]  # [n, k, d] at (row, :, position)
        values[index, :, write.positions] = value_states[:, :, 0]
        return keys[:rows, :, : write.span], values[:rows, :, : write.span]  # views: [n, k, span, d]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """The longest slot (transformers asks this only when no position ids are given)."""
        return int(self.lengths.max())
