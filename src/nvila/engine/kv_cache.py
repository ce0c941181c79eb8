"""A preallocated KV cache: `slots` sequences x `max_len` positions per decoder layer, allocated once.

Owns: the K/V buffers, each slot's length, and how one forward writes into them — prefill (a right-padded
batch of new prompts, each into its own slot, attending to itself only) or decode (one token for each of
the first n slots, at that slot's own position, attending to the slot's first `span` positions). A prefill plugs
into transformers' Qwen2 decoder as a `Cache` (its attention layers call `update` after RoPE); a decode step is
the runner's own pass, which calls `store`. K/V are kept at KV-head width (GQA heads are shared by the attention,
not stored). Does not own which slot
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
        self.write: PrefillWrite | None = None  #: where the next prefill forward writes (set by the runner)

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
        """transformers' hook in a prefill forward: store each prompt's K/V ([b, k, l, d]) in its slot; a new prompt
        attends to itself only, so its own K/V are returned."""
        write = self.write
        if not isinstance(write, PrefillWrite):
            raise RuntimeError("SlotKVCache.write must be a PrefillWrite before a prefill forward")
        length = key_states.shape[2]
        self.keys[layer_idx][write.slots, :, :length] = key_states
        self.values[layer_idx][write.slots, :, :length] = value_states
        return key_states, value_states

    def store(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, write: DecodeWrite
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decode step: write row i's K/V ([n, k, 1, d]) at its position in slot i; return the [n, k, span, d]
        views to attend to (cached positions and the new one)."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        rows = write.positions.shape[0]
        index = torch.arange(rows, device=keys.device)
        keys[index, :, write.positions] = key_states[:, :, 0]  # [n, k, d] at (row, :, position)
        values[index, :, write.positions] = value_states[:, :, 0]
        return keys[:rows, :, : write.span], values[:rows, :, : write.span]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """The longest slot (transformers asks this only when no position ids are given)."""
        return int(self.lengths.max())
