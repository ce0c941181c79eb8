"""Prompt in, text out: `NVILAPipeline` wraps a model and its processor for generation.

Owns: text-level decoding (incremental detokenisation, stop strings, streaming text deltas) over the
model's token loop, for one prompt or a batch. Does not own sampling (`generation`) or the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nvila.generation import GenerationOptions
from nvila.image_io import ImageInput
from nvila.model import NVILAForConditionalGeneration
from nvila.processing import NVILAProcessor, VideoInput


@dataclass
class TextStream:
    """Decoding state of one sequence: its tokens, how much text was emitted, whether it stopped."""

    stop: Sequence[str]
    ids: list[int] = field(default_factory=list)
    emitted: int = 0
    done: bool = False

    def push(self, token: int, eos: set[int], decode) -> str:
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

    def finish(self, decode) -> str:
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


class NVILAPipeline:
    """Generate text from prompts and images with an NVILA model."""

    def __init__(self, model: NVILAForConditionalGeneration, processor: NVILAProcessor) -> None:
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str = "cpu", dtype: torch.dtype | str = torch.float32
    ) -> NVILAPipeline:
        from nvila.checkpoint import load

        return cls(*load(path, device=device, dtype=dtype))

    def stream_batch(
        self,
        prompts: Sequence[str],
        images: Sequence[Sequence[ImageInput]] | None = None,
        options: GenerationOptions | None = None,
        videos: Sequence[Sequence[VideoInput]] | None = None,
    ) -> Iterator[list[str]]:
        """Yield, per step, the new text of every prompt ("" where nothing new is safe to show yet)."""
        options = options or GenerationOptions()
        inputs = self.processor(list(prompts), images, videos)
        eos = set(self.processor.eos_token_ids)
        decode = self.processor.decode
        streams = [TextStream(options.stop) for _ in prompts]
        tokens = self.model.generate_tokens(
            **inputs.to_model_kwargs(),
            options=options,
            eos_token_ids=self.processor.eos_token_ids,
            pad_token_id=self.processor.pad_token_id,
        )
        try:
            for step in tokens:
                yield [s.push(int(t), eos, decode) for s, t in zip(streams, step.tolist())]
                if all(s.done for s in streams):
                    break
        finally:
            tokens.close()
        tail = [s.finish(decode) for s in streams]
        if any(tail):
            yield tail

    def stream(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        options: GenerationOptions | None = None,
        videos: Sequence[VideoInput] = (),
    ) -> Iterator[str]:
        """Yield the answer to one prompt piece by piece, as soon as each piece is final."""
        for deltas in self.stream_batch([prompt], [list(images)], options, [list(videos)]):
            if deltas[0]:
                yield deltas[0]

    def generate_batch(
        self,
        prompts: Sequence[str],
        images: Sequence[Sequence[ImageInput]] | None = None,
        options: GenerationOptions | None = None,
        videos: Sequence[Sequence[VideoInput]] | None = None,
    ) -> list[str]:
        """Answers to several prompts decoded together (left-padded batch), stripped of outer whitespace."""
        answers = ["" for _ in prompts]
        for deltas in self.stream_batch(prompts, images, options, videos):
            answers = [a + d for a, d in zip(answers, deltas)]
        return [a.strip() for a in answers]

    def generate(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        options: GenerationOptions | None = None,
        videos: Sequence[VideoInput] = (),
    ) -> str:
        """The answer to one prompt about its images and videos."""
        return self.generate_batch([prompt], [list(images)], options, [list(videos)])[0]
