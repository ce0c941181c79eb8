"""Prompt in, text out: `NVILAPipeline` wraps a model and its processor for generation.

Owns: one prompt or a batch decoded together by transformers' `model.generate()`, as text deltas per step
(`generate_steps` runs it in a worker thread and hands over each step's tokens; closing the iterator stops it).
Does not own stop strings (`generation.TextStream`, shared with the serving engine `nvila.engine`) or the model.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from nvila.generation import GenerationOptions, TextStream
from nvila.image_io import ImageInput
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor, VideoInput


class _Steps(BaseStreamer):
    """A `generate()` streamer that queues each step's tokens [b] (the prompt it gets first is skipped)."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if self.prompt_seen:
            self.queue.put(value.reshape(-1).clone())
        self.prompt_seen = True

    def end(self) -> None:
        pass


class _Cancelled(StoppingCriteria):
    """Stops every sequence once the consumer has gone (closed the step iterator)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def generate_kwargs(options: GenerationOptions) -> dict[str, Any]:
    """transformers' `generate()` arguments for `options` (temperature 0: greedy; top_k 0 and top_p 1: off)."""
    sampling = {"do_sample": not options.greedy}
    if not options.greedy:
        sampling.update(temperature=options.temperature, top_k=options.top_k, top_p=options.top_p)
    return {"max_new_tokens": options.max_new_tokens, "use_cache": options.use_cache, **sampling}


def generate_steps(
    model: NVILAForConditionalGeneration,
    inputs: dict[str, Any],
    options: GenerationOptions,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
) -> Iterator[torch.Tensor]:
    """Yield each step's next tokens [b] of `model.generate(**inputs)` as they come (finished rows: the pad id).

    `generate` runs in a worker thread; its errors are raised here; closing the iterator stops it after the step it
    is in. `options.seed` seeds the sampling (torch's global generator, restored afterwards).
    """
    steps, cancelled, failure = _Steps(), threading.Event(), []

    def work() -> None:
        try:
            with torch.random.fork_rng(devices=[], enabled=options.seed is not None):
                if options.seed is not None:
                    torch.manual_seed(options.seed)
                model.generate(
                    **inputs,
                    **generate_kwargs(options),
                    eos_token_id=list(eos_token_ids),
                    pad_token_id=pad_token_id,
                    streamer=steps,
                    stopping_criteria=StoppingCriteriaList([_Cancelled(cancelled)]),
                )
        except BaseException as error:  # handed to the consumer
            failure.append(error)
        finally:
            steps.queue.put(None)

    worker = threading.Thread(target=work, name="nvila-generate", daemon=True)
    worker.start()
    try:
        while (tokens := steps.queue.get()) is not None:
            yield tokens
    finally:
        cancelled.set()
        worker.join()
    if failure:
        raise failure[0]


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
        tokens = generate_steps(self.model, inputs, options, self.processor.eos_token_ids, self.processor.pad_token_id)
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
