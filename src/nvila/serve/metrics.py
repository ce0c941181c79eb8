"""Server metrics in the Prometheus text format (version 0.0.4), without a client library.

Owns: thread-safe counters, gauges and histograms, and `ServerMetrics`, the set `nvila serve` exports at
/metrics. Does not own when things are counted (`app`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nvila.engine.core import EngineStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds; spans a tiny CPU model (milliseconds) to a large model under a long queue (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    escaped = (str(v).replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped)) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(str(labels[n]) for n in self.labelnames), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        return lines + [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Gauge:
    """A value read when rendered (e.g. the number of requests in flight)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} {self.kind}",
            f"{self.name} {_number(self.read())}",
        ]


class CounterReading(Gauge):
    """A counter kept by someone else (e.g. the engine), read when rendered."""

    kind = "counter"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help_text, tuple(sorted(buckets))
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def observe(self, value: float) -> None:
        with self._lock:
            self._sum += value
            self._count += 1
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1

    def render(self) -> list[str]:
        with self._lock:
            counts, total, count = list(self._counts), self._sum, self._count
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        lines += [f'{self.name}_bucket{{le="{_number(b)}"}} {c}' for b, c in zip(self.buckets, counts)]
        lines += [
            f'{self.name}_bucket{{le="+Inf"}} {count}',
            f"{self.name}_sum {total!r}",
            f"{self.name}_count {count}",
        ]
        return lines


class ServerMetrics:
    """Everything /metrics shows."""

    def __init__(
        self, in_flight: Callable[[], float], max_concurrent: int, engine: Callable[[], EngineStats] | None = None
    ) -> None:
        self.requests = Counter(
            "nvila_http_requests_total", "HTTP requests answered, by route and status code.", ("path", "status")
        )
        self.prompt_tokens = Counter("nvila_prompt_tokens_total", "Prompt tokens processed, visual tokens included.")
        self.generated_tokens = Counter("nvila_generated_tokens_total", "Tokens generated.")
        self.aborted = Counter(
            "nvila_requests_aborted_total",
            "Chat completions stopped early: the client disconnected or the request timed out.",
            ("reason",),
        )
        self.ttft = Histogram(
            "nvila_time_to_first_token_seconds", "Seconds from a chat completion's arrival to its first token."
        )
        self.latency = Histogram(
            "nvila_request_latency_seconds", "Seconds from a chat completion's arrival to its last token."
        )
        self.in_flight = Gauge(
            "nvila_requests_in_flight", "Chat completions admitted and not finished (queued or generating).", in_flight
        )
        self.max_concurrent = Gauge(
            "nvila_max_concurrent_requests", "Admission bound; requests beyond it get 429.", lambda: max_concurrent
        )
        self.engine = [] if engine is None else _engine_metrics(engine)

    def render(self) -> str:
        parts = (
            self.requests,
            self.prompt_tokens,
            self.generated_tokens,
            self.aborted,
            self.ttft,
            self.latency,
            self.in_flight,
            self.max_concurrent,
            *self.engine,
        )
        return "\n".join(line for metric in parts for line in metric.render()) + "\n"


def _engine_metrics(stats: Callable[[], EngineStats]) -> list[Gauge]:
    """The inference engine's state and counters, read from `stats()` when rendered."""
    return [
        Gauge("nvila_engine_slots", "KV cache slots: sequences that can decode together.", lambda: stats().slots),
        Gauge("nvila_engine_running_sequences", "Sequences holding a slot.", lambda: stats().running),
        Gauge("nvila_engine_waiting_requests", "Requests queued for a free slot.", lambda: stats().waiting),
        CounterReading("nvila_engine_decode_steps_total", "Batched decode steps run.", lambda: stats().decode_steps),
        CounterReading(
            "nvila_vision_cache_hits_total",
            "Images / videos whose visual embeddings came from the cache (not re-encoded).",
            lambda: stats().vision_cache_hits,
        ),
        CounterReading(
            "nvila_vision_cache_misses_total",
            "Images / videos encoded by the vision tower.",
            lambda: stats().vision_cache_misses,
        ),
        Gauge("nvila_vision_cache_bytes", "Bytes of visual embeddings cached.", lambda: stats().vision_cache_bytes),
    ]
