"""Decoding options, next-token selection (greedy, temperature, top-k, top-p) and text-level stopping.

Owns: `GenerationOptions` (validated), `select_next_token` (one set of options for a batch),
`select_next_tokens` (per-sequence options and generators, for the serving engine) and `TextStream`
(incremental detokenisation, stop strings, EOS). Shared by `nvila.pipeline` (transformers' `generate()`) and
`nvila.engine`; does not own any decoding loop (the engine's is `nvila.engine.core`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def select_next_tokens(
    logits: torch.Tensor, options: Sequence[GenerationOptions], generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """[b, vocab] logits -> [b] next token ids, row i decoded with `options[i]` and `generators[i]`.

    Rows that share their sampling settings and have no generator of their own are selected together;
    a row with a generator is sampled alone, so a seeded sequence draws exactly what it would alone.
    """
    groups: dict[tuple, list[int]] = {}
    for row, (opts, generator) in enumerate(zip(options, generators)):
        if opts.greedy:
            key: tuple = ("greedy",)
        elif generator is not None:
            key = ("own generator", row)
        else:
            key = (opts.temperature, opts.top_k, opts.top_p)
        groups.setdefault(key, []).append(row)
    out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for rows in groups.values():
        index = torch.tensor(rows, device=logits.device)
        first = rows[0]
        out[index] = select_next_token(logits[index], options[first], generators[first])
    return out


@dataclass
class TextStream:
    """Decoding state of one sequence: its tokens, how much text was emitted, whether it stopped."""

    stop: Sequence[str]
    ids: list[int] = field(default_factory=list)
    emitted: int = 0
    done: bool = False

    def push(self, token: int, eos: set[int], decode: Callable[[list[int]], str]) -> str:
        """Add one token; return the text that is now safe to emit."""
        if self.done:
            return ""
        if token in eos:
            self.done = True
            return self._flush(decode(self.ids))
        self.ids.append(token)
        text = decode(self.ids)
        cut = _find_stop(text, self.stop, max(0, self.emitted - max((len(s) for s in self.stop), default=0)))
        if cut is not None:
            self.done = True
            return self._flush(text[:cut])
        safe = len(text) - _held_back(text, self.stop)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for its other bytes
            safe = min(safe, len(text) - 1)
        if safe <= self.emitted:
            return ""
        delta, self.emitted = text[self.emitted : safe], safe
        return delta

    def finish(self, decode: Callable[[list[int]], str]) -> str:
        """Text not yet emitted when decoding ended without EOS or stop string."""
        if self.done:
            return ""
        self.done = True
        return self._flush(decode(self.ids))

    def _flush(self, text: str) -> str:
        delta = text[self.emitted :]
        self.emitted = max(self.emitted, len(text))
        return delta


def _find_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
                break
    return longest
