"""One request inside the engine, and a thread-safe way to read its events.

Owns: `Request` (inputs, decoding state — slot, text stream, tokens produced, sampling generator — and a
lifecycle waiting -> running -> done that cancellation from any thread respects: a waiting request ends
at once, a running one at the scheduler's next iteration) and `EventQueue` (a callback that collects
events for a synchronous reader). Does not own scheduling (`core`) or asyncio (`nvila.serve.engine`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

import torch

from nvila.engine.events import Cancelled, Event, Failed, Finished, Started, Step, is_final
from nvila.engine.media import PromptMedia
from nvila.generation import GenerationOptions, TextStream

log = logging.getLogger("nvila.engine")

EventCallback = Callable[[Event], None]


class Request:
    """A prompt being answered. `on_event` is called with every event, the last one exactly once; it runs on
    the scheduler thread (or on the thread that cancels a waiting request), so it must return quickly."""

    def __init__(
        self,
        input_ids: list[int],
        media: PromptMedia,
        options: GenerationOptions,
        on_event: EventCallback,
        device: torch.device,
    ) -> None:
        self.input_ids, self.media, self.options = input_ids, media, options
        self.on_event = on_event
        self.generator = None if options.seed is None else torch.Generator(device=device).manual_seed(options.seed)
        self.stream = TextStream(options.stop)
        self.produced = 0  #: tokens generated so far (the end token included)
        self.slot: int | None = None
        self.next_input: int | None = None  #: the last token produced, to be fed back
        self._state = "waiting"
        self._cancel: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def cancel_error(self) -> BaseException | None:
        """Why the request was cancelled while running, if it was."""
        return self._cancel

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the request (callable from any thread); it ends with `Failed(error or Cancelled())`."""
        error = error or Cancelled()
        with self._lock:
            if self._state == "done":
                return
            waiting = self._state == "waiting"
            if waiting:
                self._state = "done"
            elif self._cancel is None:
                self._cancel = error
        if waiting:
            self._deliver(Failed(error))

    def admit(self) -> bool:
        """Waiting -> running; False when it was cancelled meanwhile."""
        with self._lock:
            if self._state != "waiting":
                return False
            self._state = "running"
            return True

    def end(self, event: Finished | Failed) -> None:
        """Running -> done with its last event."""
        with self._lock:
            self._state = "done"
        self._deliver(event)

    def emit(self, event: Started | Step) -> None:
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        """Call `on_event`; one that raises is logged and cancels its request, and the engine goes on."""
        try:
            self.on_event(event)
        except Exception as e:
            log.exception("a request's event callback failed; the request is cancelled")
            if not is_final(event):
                self.cancel(e)


class EventQueue:
    """Collects a request's events from the engine thread; iterate to read them until the last one."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()

    def __call__(self, event: Event) -> None:
        self._queue.put(event)

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self._queue.get()
            yield event
            if is_final(event):
                return

    def text(self) -> str:
        """The whole answer; raises the request's error if it failed."""
        pieces = []
        for event in self:
            if isinstance(event, Step):
                pieces.append(event.text)
            elif isinstance(event, Failed):
                raise event.error
        return "".join(pieces)
