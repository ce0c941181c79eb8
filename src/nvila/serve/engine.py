"""The server's side of the inference engine: chat jobs in, events on the event loop out.

Owns: `Job` (one chat request: its conversation and media, the asyncio queue its events arrive on, its
cancellation, and `on_done`, run exactly once when the job is over) and `Engine` (encodes conversations
on a small thread pool, then hands them to `nvila.engine.InferenceEngine`, which batches all running
requests continuously). Does not own HTTP, limits or media reading (`app`, `limits`, `media`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from nvila.engine.config import EngineConfig
from nvila.engine.core import InferenceEngine
from nvila.engine.events import Cancelled, EngineClosed, Event, Failed, Finished, Started, Step, is_final
from nvila.engine.request import Request
from nvila.engine.runner import ModelRunner, Runner
from nvila.errors import NVILAError
from nvila.generation import GenerationOptions
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor, VideoInput

log = logging.getLogger("nvila.serve")

__all__ = ["Cancelled", "Engine", "EngineClosed", "Event", "Failed", "Finished", "Job", "Started", "Step"]

#: Threads that tokenize conversations and cut images into tiles while the engine decodes.
ENCODERS = 2


class Job:
    """One chat request: its inputs, the asyncio queue its events arrive on, and its cancellation.

    Events: Started, Step..., then exactly one Finished or Failed; `on_done` runs right before that last one
    is posted (a job cancelled before it reached the engine ends at once).
    """

    def __init__(
        self,
        messages: list[dict[str, str]],
        images: list[Image.Image],
        options: GenerationOptions,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[], None],
        videos: Sequence[VideoInput] = (),
        video_timestamps: bool | None = None,
    ) -> None:
        self.messages, self.images, self.videos, self.options = messages, images, list(videos), options
        self.video_timestamps = video_timestamps  #: frame times in the prompt; None: the processor's setting
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._loop = loop
        self._on_done = on_done
        self._request: Request | None = None
        self._cancelled = False
        self._done = False
        self._lock = threading.RLock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the job (within one decoding step) and wake whoever waits on its events."""
        error = error or Cancelled()
        with self._lock:
            self._cancelled = True
            request = self._request
        if request is not None:
            request.cancel(error)  # the engine posts Failed(error) once the slot is free
        else:
            self.deliver(Failed(error))

    def start(self, submit: Callable[[], Request]) -> bool:
        """Hand the job to the engine with `submit()`, unless it was cancelled meanwhile; whether it was."""
        with self._lock:
            if self._cancelled or self._done:
                return False
            self._request = submit()
            return True

    def deliver(self, event: Event) -> None:
        """Post an event to the event loop (callable from any thread); the first final event ends the job."""
        if is_final(event):
            with self._lock:
                if self._done:
                    return
                self._done = True
            self._on_done()
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)


class Engine:
    """Runs chat jobs on an `InferenceEngine` (`config.max_batch` sequences decoded together).

    `model` may also be a ready `nvila.engine.Runner` (tests script one).
    """

    def __init__(
        self,
        model: NVILAForConditionalGeneration | Runner,
        processor: NVILAProcessor,
        on_tokens: Callable[[int], None] | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        config = config or EngineConfig()
        self.processor = processor
        runner = model if isinstance(model, Runner) else ModelRunner.from_config(model, config)
        self.core = InferenceEngine(runner, processor, config)
        self._on_tokens = on_tokens or (lambda n: None)
        self._encoders = ThreadPoolExecutor(max_workers=ENCODERS, thread_name_prefix="nvila-encode")
        self._jobs: set[Job] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise EngineClosed("the server is shutting down")
            self._jobs.add(job)
        self._encoders.submit(self._start, job)

    def close(self) -> None:
        """Cancel every queued or running job and stop the engine."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel(EngineClosed("the server is shutting down"))
        self._encoders.shutdown(wait=True, cancel_futures=True)
        self.core.close()

    def _start(self, job: Job) -> None:
        """Encode the conversation and queue it on the engine (on an encoder thread)."""
        produced = 0

        def relay(event: Event) -> None:
            nonlocal produced
            if isinstance(event, Step) and event.token:
                produced += 1
            if is_final(event):
                with self._lock:
                    self._jobs.discard(job)
                self._on_tokens(produced)
            job.deliver(event)

        try:
            started = False
            if not job.cancelled:
                sample = self.processor.encode_messages(
                    job.messages,
                    job.images,
                    job.videos,
                    add_generation_prompt=True,
                    video_timestamps=job.video_timestamps,
                )
                started = job.start(lambda: self.core.submit(sample, job.options, relay))
            if not started:  # cancelled before it reached the engine: it has ended already
                with self._lock:
                    self._jobs.discard(job)
        except Exception as e:  # reported to the request (bad input: 400; anything else is logged)
            if not isinstance(e, NVILAError | EngineClosed):
                log.exception("could not start generation")
            relay(Failed(e))
