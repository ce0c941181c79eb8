"""What a request hears from the engine, in order: Started, Step..., then exactly one of Finished or Failed.

Owns: the event types and the two errors a request can end with besides a real failure (`Cancelled`,
`EngineClosed`). Shared by `nvila.engine` and the HTTP server (`nvila.serve`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Started:
    prompt_tokens: int  #: visual tokens included


@dataclass
class Step:
    text: str  #: new text that is safe to show ("" while a stop string or a character is incomplete)
    token: bool = True  #: False for the text flushed after the last token


@dataclass
class Finished:
    reason: str  #: "stop" (end token or stop string) or "length" (max tokens or the context's end)
    completion_tokens: int


@dataclass
class Failed:
    error: BaseException


Event = Started | Step | Finished | Failed


class Cancelled(Exception):
    """The request was cancelled (client gone, timeout or shutdown) before it finished."""


class EngineClosed(Exception):
    """The engine is shutting down."""


def is_final(event: Event) -> bool:
    """Whether this is a request's last event."""
    return isinstance(event, Finished | Failed)
