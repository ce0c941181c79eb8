"""Decoding options and next-token selection (greedy, temperature, top-k, top-p).

Owns: `GenerationOptions` (validated) and `select_next_token`. Does not own the decoding loop
(`NVILAForConditionalGeneration.generate_tokens`) nor text-level stop strings (`nvila.pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nvila.errors import ConfigError


@dataclass
class GenerationOptions:
    """How to decode. `temperature` 0 means greedy; `seed` makes sampling repeatable."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  #: 0 disables top-k
    stop: list[str] = field(default_factory=list)  #: stop strings (text-level, not included in the output)
    seed: int | None = None
    use_cache: bool = True  #: False recomputes the whole sequence every step (for checks, slow)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 100.0:
            raise ConfigError(f"temperature must be in [0, 100], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if any(not s for s in self.stop):
            raise ConfigError("stop strings must not be empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def select_next_token(
    logits: torch.Tensor, options: GenerationOptions, generator: torch.Generator | None = None
) -> torch.Tensor:
    """[b, vocab] logits of the last position -> [b] next token ids."""
    if options.greedy:
        return logits.argmax(dim=-1)
    scores = logits.float() / options.temperature
    if options.top_k > 0:
        kth = torch.topk(scores, min(options.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - sorted_scores.softmax(dim=-1) >= options.top_p  # keeps at least one token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = scores.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
