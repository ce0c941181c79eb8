"""An LRU cache of visual embeddings, bounded by bytes, keyed by a hash of the preprocessed media tensors.

Owns: `media_key` (BLAKE2b of a tensor's bytes, shape and dtype plus what else shapes its features) and
`FeatureCache` (least recently used entries go first once the byte budget is exceeded; hit / miss counts).
Used by the engine's scheduler thread only, so it takes no locks. Does not own how features are computed
(`media`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable

import torch


def media_key(pixels: torch.Tensor, *extra: Hashable) -> str:
    """A hex digest of a preprocessed media tensor (e.g. [n, 3, s, s] tiles) and anything else that shapes its
    features (block size, pooling)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((tuple(pixels.shape), str(pixels.dtype), extra)).encode())
    digest.update(pixels.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class FeatureCache:
    """Visual embeddings ([tokens, h] tensors on the model's device) by media key, at most `max_bytes` in all.

    An entry larger than the whole budget is not kept; `max_bytes` 0 disables caching.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> torch.Tensor | None:
        """The features under `key` (now the most recently used), counting a hit or a miss."""
        features = self._entries.get(key)
        if features is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return features

    def put(self, key: str, features: torch.Tensor) -> None:
        size = tensor_bytes(features)
        if size > self.max_bytes or key in self._entries:
            return
        while self.bytes + size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= tensor_bytes(evicted)
        self._entries[key] = features.clone()  # a view would keep its whole base tensor alive
        self.bytes += size
