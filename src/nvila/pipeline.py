"""Prompt in, text out: `NVILAPipeline` wraps a model and its processor for generation.

Owns: one prompt or a batch decoded together by the model's token loop, as text deltas. Does not own
sampling or stop strings (`generation`, shared with the serving engine `nvila.engine`) or the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from nvila.generation import GenerationOptions, TextStream
from nvila.image_io import ImageInput
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor, VideoInput


class NVILAPipeline:
    """Generate text from prompts and images with an NVILA model."""

    def __init__(self, model: NVILAForConditionalGeneration, processor: NVILAProcessor) -> None:
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str = "cpu", dtype: torch.dtype | str = torch.float32
    ) -> NVILAPipeline:
        from nvila.loader import load

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
