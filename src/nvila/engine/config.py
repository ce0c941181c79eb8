"""`EngineConfig`: the knobs of the inference engine (slots, sequence length, caches, compilation).

Owns: the settings and their checks. Does not own what they drive (`runner`, `core`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nvila.errors import ConfigError

MiB = 1024 * 1024


@dataclass
class EngineConfig:
    """How the engine batches and what it keeps in memory; the defaults suit one GPU and a handful of clients."""

    max_batch: int = 8  #: KV cache slots: sequences decoded together; more requests wait for a free slot
    max_len: int | None = None  #: positions per slot, prompt + answer (default: the model's context)
    vision_cache_bytes: int = 256 * MiB  #: visual embeddings of recent images / videos kept for reuse (0: off)
    max_prefill_tokens: int = 8192  #: padded prompt tokens prefilled in one forward (one prompt always fits)
    compile: bool = False  #: torch.compile the decode step (CUDA only; ignored on other devices)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_len is not None and self.max_len < 2:
            raise ConfigError(f"max_len must be >= 2, got {self.max_len}")
        if self.vision_cache_bytes < 0:
            raise ConfigError(f"vision_cache_bytes must be >= 0, got {self.vision_cache_bytes}")
        if self.max_prefill_tokens < 1:
            raise ConfigError(f"max_prefill_tokens must be >= 1, got {self.max_prefill_tokens}")
