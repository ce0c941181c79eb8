"""Fixtures for the server tests: pipelines (tiny random model, or a scripted stand-in), in-process and
real (uvicorn on 127.0.0.1) servers, request builders and a /metrics reader."""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
import torch
from PIL import Image

from nvila.generation import GenerationOptions
from nvila.pipeline import NVILAPipeline
from nvila.serve.app import create_app
from nvila.serve.limits import ServeSettings
from tests.conftest import noise_image

MODEL = "tiny"
#: The image question shared by the parity test and the browser test (one costly reference answer).
IMAGE_QUESTION = "What colour is the circle?"
IMAGE_MAX_TOKENS = 6


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def pipeline(tiny) -> NVILAPipeline:
    return NVILAPipeline(*tiny)


class ScriptedModel:
    """Stands in for the model in tests of the server's mechanics: an `nvila.engine.Runner` with `slots` slots
    whose every sequence answers `token_ids`, one per step (cycling forever with `repeat`), sleeping `delay` s
    before each batched step. Records sequences admitted (`started`), slots freed (`closed`) and tokens
    produced (`steps`)."""

    def __init__(self, token_ids: Sequence[int], vocab: int, delay: float = 0.0, repeat: bool = False, slots: int = 8):
        self.token_ids, self.vocab, self.delay, self.repeat = list(token_ids), vocab, delay, repeat
        self.slots, self.max_len, self.device = slots, 10**9, torch.device("cpu")
        self.started = 0
        self.closed = 0
        self.steps = 0
        self._position: dict[int, int] = {}  # slot -> tokens produced

    def _next(self, slots: Sequence[int]) -> torch.Tensor:
        time.sleep(self.delay)
        logits = torch.full((len(slots), self.vocab), float("-inf"))
        for row, slot in enumerate(slots):
            k = self._position[slot]
            self._position[slot] = k + 1
            logits[row, self.token_ids[k % len(self.token_ids) if self.repeat else min(k, len(self.token_ids) - 1)]] = 0
        self.steps += len(slots)
        return logits

    def prefill(self, prompts, features) -> torch.Tensor:
        self.started += len(prompts)
        self._position.update({p.slot: 0 for p in prompts})
        return self._next([p.slot for p in prompts])

    def decode(self, slots, tokens) -> torch.Tensor:
        return self._next(slots)

    def free(self, slot: int) -> None:
        self.closed += 1
        del self._position[slot]


def scripted_pipeline(pipeline: NVILAPipeline, text: str, delay: float = 0.0, repeat: bool = False, slots: int = 8):
    """A pipeline whose model answers `text` (then the end token unless `repeat`), with the real processor."""
    processor = pipeline.processor
    ids = processor.tokenizer(text, add_special_tokens=False).input_ids
    if not repeat:
        ids = ids + processor.eos_token_ids[:1]
    return NVILAPipeline(ScriptedModel(ids, len(processor.tokenizer), delay, repeat, slots), processor)


@pytest.fixture
def asgi():
    """Factory: an httpx.AsyncClient talking in-process to a new app (its engine is closed afterwards)."""
    apps = []

    def make(pipe: NVILAPipeline, **settings) -> httpx.AsyncClient:
        app = create_app(pipe, ServeSettings(model_name=MODEL, **settings))
        apps.append(app)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60)
        client.app = app
        return client

    yield make
    for app in apps:
        app.state.engine.close()


@dataclass
class LiveServer:
    url: str
    app: object
    server: object


@contextlib.contextmanager
def live_server(pipe: NVILAPipeline, **settings) -> Iterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 (a free port) in a thread, running a new app."""
    import uvicorn

    app = create_app(pipe, ServeSettings(model_name=MODEL, **settings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def chat(text: str | list, *, max_tokens: int = 8, **extra) -> dict:
    """A chat completion request body with one user message."""
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, **extra}


def png_bytes(image: Image.Image | None = None) -> bytes:
    buffer = io.BytesIO()
    (image or noise_image(64, 48)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def sse_events(body: str) -> list:
    """The `data:` payloads of an event stream, JSON-decoded except the final '[DONE]'."""
    import json

    events = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def streamed_text(events: list) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))


def read_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture(scope="session")
def image_reference(pipeline, tmp_path_factory):
    """(png path, question, max tokens, NVILAPipeline.generate's greedy answer) for one image."""
    image = noise_image(64, 48, seed=3)
    path = tmp_path_factory.mktemp("serve") / "question.png"
    image.save(path)
    answer = pipeline.generate(IMAGE_QUESTION, [image], GenerationOptions(max_new_tokens=IMAGE_MAX_TOKENS))
    return path, IMAGE_QUESTION, IMAGE_MAX_TOKENS, answer
