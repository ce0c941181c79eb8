"""The serving engine: one thread that runs chat requests one after another on a model that is not thread-safe.

Owns: `stream_conversation` (a whole conversation, pre-encoded with `NVILAProcessor.encode_messages`, ->
text deltas, over `model.generate_tokens`), `Job` (one request's events, handed to the event loop, and its
cancellation) and `Engine` (the single worker thread). Requests are not batched together: each runs alone,
so answers equal `NVILAPipeline.generate` exactly. Does not own HTTP, limits or media reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from nvila.errors import NVILAError, PromptError
from nvila.generation import GenerationOptions
from nvila.image_processing import normalize_tiles
from nvila.model import NVILAForConditionalGeneration
from nvila.pipeline import TextStream
from nvila.processing import NVILAProcessor

log = logging.getLogger("nvila.serve")


# ---- events, in the order a job posts them: Started, Step..., Finished (or Failed at any point) ------
@dataclass
class Started:
    prompt_tokens: int  #: visual tokens included


@dataclass
class Step:
    text: str  #: new text that is safe to show ("" while a stop string or a character is incomplete)
    token: bool = True  #: False for the text flushed after the last token


@dataclass
class Finished:
    reason: str  #: "stop" (end token or stop string) or "length" (max tokens or the model's context)
    completion_tokens: int


@dataclass
class Failed:
    error: BaseException


Event = Started | Step | Finished | Failed


class Cancelled(Exception):
    """The job was cancelled (client gone, timeout or shutdown) before it finished."""


class EngineClosed(Exception):
    """The server is shutting down."""


def stream_conversation(
    model: NVILAForConditionalGeneration,
    processor: NVILAProcessor,
    messages: Sequence[dict[str, str]],
    images: Sequence[Image.Image],
    options: GenerationOptions,
) -> Iterator[Event]:
    """Generate the assistant's next answer to a conversation: Started, one Step per token, Finished.

    `max_new_tokens` is clamped to the room left in the model's context. Closing the iterator stops decoding.
    """
    sample = processor.encode_messages(messages, images, add_generation_prompt=True)
    processor.check_length(sample)
    room = processor.config.text.model_max_length - len(sample.input_ids)
    if room < 1:
        raise PromptError(f"the prompt fills the model's context of {processor.config.text.model_max_length} tokens")
    options = dataclasses.replace(options, max_new_tokens=min(options.max_new_tokens, room))
    yield Started(len(sample.input_ids))

    input_ids, attention_mask = processor.pad([sample.input_ids])  # [1, l]
    pixel_values = normalize_tiles(sample.tiles, processor.config) if sample.tiles else None
    tokens = model.generate_tokens(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixel_values,
        image_block_sizes=sample.block_sizes,
        options=options,
        eos_token_ids=processor.eos_token_ids,
        pad_token_id=processor.pad_token_id,
    )
    stream, eos, produced = TextStream(options.stop), set(processor.eos_token_ids), 0
    try:
        for step in tokens:  # [1]
            produced += 1
            yield Step(stream.push(int(step[0]), eos, processor.decode))
            if stream.done:
                break
    finally:
        tokens.close()
    reason = "stop" if stream.done else "length"
    tail = stream.finish(processor.decode)
    if tail:
        yield Step(tail, token=False)
    yield Finished(reason, produced)


class Job:
    """One request: its inputs, the asyncio queue its events arrive on, and its cancellation.

    `on_done` runs exactly once: when the engine finishes the job, or at cancellation if it never started.
    """

    def __init__(
        self,
        messages: list[dict[str, str]],
        images: list[Image.Image],
        options: GenerationOptions,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[], None],
    ) -> None:
        self.messages, self.images, self.options = messages, images, options
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._loop = loop
        self._on_done = on_done
        self._cancelled = threading.Event()
        self._state = "pending"  # -> running -> done, or pending -> done
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the job (within one decoding step) and wake whoever waits on its events."""
        self._cancelled.set()
        with self._lock:
            never_ran = self._state == "pending"
            if never_ran:
                self._state = "done"
        if never_ran:
            self._on_done()
        self.post(Failed(error or Cancelled()))

    def post(self, event: Event) -> None:
        """Hand an event to the event loop (callable from any thread)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)

    def _begin(self) -> bool:
        with self._lock:
            if self._state != "pending":
                return False
            self._state = "running"
            return True

    def _end(self) -> None:
        with self._lock:
            self._state = "done"
        self._on_done()


class Engine:
    """Runs jobs one at a time, in arrival order, on one worker thread."""

    def __init__(
        self,
        model: NVILAForConditionalGeneration,
        processor: NVILAProcessor,
        on_tokens: Callable[[int], None] | None = None,
    ) -> None:
        self.model, self.processor = model, processor
        self._on_tokens = on_tokens or (lambda n: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nvila-engine")
        self._jobs: set[Job] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise EngineClosed("the server is shutting down")
            self._jobs.add(job)
        self._executor.submit(self._run, job)

    def close(self) -> None:
        """Cancel every queued or running job and stop the worker thread."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel(EngineClosed("the server is shutting down"))
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: Job) -> None:
        produced = 0
        try:
            if not job._begin():
                return
            try:
                steps = stream_conversation(self.model, self.processor, job.messages, job.images, job.options)
                try:
                    for event in steps:
                        if job.cancelled:
                            break
                        if isinstance(event, Step) and event.token:
                            produced += 1
                        job.post(event)
                finally:
                    steps.close()
            except Exception as e:  # reported to the request; the engine goes on with the next job
                if not isinstance(e, NVILAError):
                    log.exception("generation failed")
                job.post(Failed(e))
            finally:
                job._end()
        finally:
            with self._lock:
                self._jobs.discard(job)
            self._on_tokens(produced)
