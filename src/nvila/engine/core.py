"""`InferenceEngine`: continuous batching of many requests over one model on one scheduler thread.

Owns: the waiting queue, slot assignment (lowest free slot first), and the scheduler loop. Each iteration
drops cancelled sequences (freeing their slots), admits waiting requests into free slots (within a prefill
token budget), prefills them together, then runs one batched decode step for every running sequence;
tokens are chosen with each request's own sampling settings (`generation.select_next_tokens`), turned
into text and checked for EOS / stop strings / max tokens (`generation.TextStream`), and a finished
sequence frees its slot at once. Does not own the model forward (`runner`) or HTTP (`nvila.serve`).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nvila.engine.config import EngineConfig
from nvila.engine.events import EngineClosed, Failed, Finished, Started, Step
from nvila.engine.feature_cache import FeatureCache
from nvila.engine.media import PromptMedia
from nvila.engine.request import EventCallback, EventQueue, Request
from nvila.engine.runner import ModelRunner, Prompt, Runner
from nvila.errors import NVILAError, PromptError
from nvila.generation import GenerationOptions, select_next_tokens
from nvila.image_io import ImageInput
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import EncodedSample, NVILAProcessor, VideoInput

log = logging.getLogger("nvila.engine")


@dataclass
class EngineStats:
    """A snapshot of the engine's state and counters."""

    slots: int
    running: int
    waiting: int
    prefill_batches: int
    decode_steps: int
    vision_cache_hits: int
    vision_cache_misses: int
    vision_cache_bytes: int


class InferenceEngine:
    """Answers requests concurrently: `submit` queues one, the scheduler thread batches all running ones."""

    def __init__(self, runner: Runner, processor: NVILAProcessor, config: EngineConfig | None = None) -> None:
        config = config or EngineConfig()
        self.runner, self.processor = runner, processor
        self.features = FeatureCache(config.vision_cache_bytes)
        self.max_prefill_tokens = config.max_prefill_tokens
        self._eos = set(processor.eos_token_ids)
        self._waiting: deque[Request] = deque()
        self._running: dict[int, Request] = {}  # slot -> request
        self._free = list(range(runner.slots))  # a heap: the lowest free slot is taken first
        self._prefills = 0
        self._steps = 0
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="nvila-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_model(
        cls, model: NVILAForConditionalGeneration, processor: NVILAProcessor, config: EngineConfig | None = None
    ) -> InferenceEngine:
        """An engine with a KV cache of `config.max_batch` slots for the model."""
        config = config or EngineConfig()
        return cls(ModelRunner.from_config(model, config), processor, config)

    # ---- requests -----------------------------------------------------------------------------------
    def submit(self, sample: EncodedSample, options: GenerationOptions, on_event: EventCallback) -> Request:
        """Queue an encoded conversation (with the generation prompt); `on_event` gets its events from the
        scheduler thread (Started once it has a slot). `max_new_tokens` is clamped to the room left in a slot.

        Raises `PromptError` for a prompt that leaves no room, `EngineClosed` after `close`.
        """
        self.processor.check_length(sample)
        room = self.runner.max_len - len(sample.input_ids)
        if room < 1:
            raise PromptError(
                f"the prompt is {len(sample.input_ids)} tokens with its visual tokens, which leaves no room in the "
                f"engine's sequence length of {self.runner.max_len}; use a shorter prompt or fewer images"
            )
        options = dataclasses.replace(options, max_new_tokens=min(options.max_new_tokens, room))
        media = PromptMedia.from_sample(sample, self.processor.config)
        request = Request(sample.input_ids, media, options, on_event, self.runner.device)
        with self._wake:
            if self._closed:
                raise EngineClosed("the engine is shutting down")
            self._waiting.append(request)
            self._wake.notify()
        return request

    def generate(
        self,
        prompts: Sequence[str],
        images: Sequence[Sequence[ImageInput]] | None = None,
        options: GenerationOptions | Sequence[GenerationOptions] | None = None,
        videos: Sequence[Sequence[VideoInput]] | None = None,
    ) -> list[str]:
        """Answers to prompts submitted together (each a user turn), stripped like `NVILAPipeline.generate`."""
        images = images if images is not None else [[] for _ in prompts]
        videos = videos if videos is not None else [[] for _ in prompts]
        if options is None or isinstance(options, GenerationOptions):
            options = [options or GenerationOptions()] * len(prompts)
        queues = []
        for prompt, imgs, vids, opts in zip(prompts, images, videos, options, strict=True):
            sample = self.processor.encode_messages(
                [{"role": "user", "content": prompt}], imgs, vids, add_generation_prompt=True
            )
            queues.append(EventQueue())
            self.submit(sample, opts, queues[-1])
        return [q.text().strip() for q in queues]

    def stats(self) -> EngineStats:
        return EngineStats(
            slots=self.runner.slots,
            running=len(self._running),
            waiting=len(self._waiting),
            prefill_batches=self._prefills,
            decode_steps=self._steps,
            vision_cache_hits=self.features.hits,
            vision_cache_misses=self.features.misses,
            vision_cache_bytes=self.features.bytes,
        )

    def close(self) -> None:
        """Stop the scheduler; every queued or running request ends with `Failed(EngineClosed)`."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    # ---- the scheduler loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._closed or self._waiting or self._running):
                    self._wake.wait()
                if self._closed:
                    break
                admitted = self._admit()
            self._drop_cancelled()
            admitted = [r for r in admitted if r.slot is not None]  # not cancelled meanwhile
            if admitted:
                self._run(self._prefill, admitted)
            if self._running:
                self._run(self._decode, list(self._running.values()))
        self._shutdown()

    def _admit(self) -> list[Request]:
        """Move waiting requests into free slots while their padded prefill fits the token budget."""
        admitted: list[Request] = []
        longest = 0
        while self._waiting and self._free:
            request = self._waiting[0]
            longest_if = max(longest, len(request.input_ids))
            if admitted and longest_if * (len(admitted) + 1) > self.max_prefill_tokens:
                break
            self._waiting.popleft()
            if not request.admit():  # cancelled while waiting: it has already ended
                continue
            request.slot = heapq.heappop(self._free)
            self._running[request.slot] = request
            request.emit(Started(len(request.input_ids)))
            admitted.append(request)
            longest = longest_if
        return admitted

    def _drop_cancelled(self) -> None:
        """End the running requests whose cancellation was asked for, freeing their slots."""
        for request in list(self._running.values()):
            if request.cancel_error is not None:
                self._release(request, Failed(request.cancel_error))

    def _run(self, work: Callable[[list[Request]], None], requests: list[Request]) -> None:
        """Run a prefill or decode; on an error, end those requests with it (the engine goes on)."""
        try:
            work(requests)
        except Exception as e:
            if not isinstance(e, NVILAError):
                log.exception("generation failed")
            for request in requests:
                if request.slot is not None:
                    self._release(request, Failed(e))

    def _prefill(self, requests: list[Request]) -> None:
        prompts = [Prompt(r.slot, r.input_ids, r.media) for r in requests]
        logits = self.runner.prefill(prompts, self.features)
        self._prefills += 1
        self._take_tokens(requests, logits)

    def _decode(self, requests: list[Request]) -> None:
        logits = self.runner.decode([r.slot for r in requests], [r.next_input for r in requests])
        self._steps += 1
        self._take_tokens(requests, logits)

    def _take_tokens(self, requests: list[Request], logits: torch.Tensor) -> None:
        """Choose each sequence's next token, stream its text, end the sequences that are done."""
        tokens = select_next_tokens(logits, [r.options for r in requests], [r.generator for r in requests])
        for request, token in zip(requests, tokens.tolist()):
            request.produced += 1
            request.emit(Step(request.stream.push(token, self._eos, self.processor.decode)))
            if request.stream.done:
                self._release(request, Finished("stop", request.produced))
            elif request.produced >= request.options.max_new_tokens:
                tail = request.stream.finish(self.processor.decode)
                if tail:
                    request.emit(Step(tail, token=False))
                self._release(request, Finished("length", request.produced))
            else:
                request.next_input = token

    def _release(self, request: Request, event: Finished | Failed) -> None:
        """Free the request's slot and give it its last event."""
        slot = request.slot
        request.slot = None
        self.runner.free(slot)
        del self._running[slot]
        heapq.heappush(self._free, slot)
        request.end(event)

    def _shutdown(self) -> None:
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
        for request in waiting:
            request.cancel(EngineClosed("the engine is shutting down"))
        for request in list(self._running.values()):
            self._release(request, Failed(EngineClosed("the engine is shutting down")))
