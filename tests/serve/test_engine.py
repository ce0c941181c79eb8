"""The server on the batching engine: concurrent requests get the pipeline's answers, the engine's state is
in /metrics, and a repeated image is served from the vision cache (counted in /metrics)."""

from __future__ import annotations

import asyncio

import pytest

from nvila.engine.config import EngineConfig
from nvila.generation import GenerationOptions
from tests.serve.conftest import chat, data_uri, image_part, read_metrics, text_part

pytestmark = pytest.mark.anyio
URL = "/v1/chat/completions"
PROMPTS = ["How many squares are there?", "What colour is the circle?", "Describe this image in detail."]


async def test_concurrent_requests_keep_their_answers_and_the_engine_shows_in_metrics(asgi, pipeline):
    expected = [pipeline.generate(p, [], GenerationOptions(max_new_tokens=6)) for p in PROMPTS]
    client = asgi(pipeline, engine=EngineConfig(max_batch=3))
    responses = await asyncio.gather(*(client.post(URL, json=chat(p, max_tokens=6)) for p in PROMPTS))
    answers = [r.json()["choices"][0]["message"]["content"].strip() for r in responses]
    assert answers == expected
    generated = sum(r.json()["usage"]["completion_tokens"] for r in responses)
    metrics = read_metrics((await client.get("/metrics")).text)
    assert metrics["nvila_engine_slots"] == 3
    assert metrics["nvila_engine_running_sequences"] == metrics["nvila_engine_waiting_requests"] == 0
    assert 0 < metrics["nvila_engine_decode_steps_total"] <= generated - len(PROMPTS)  # the first token: prefill


async def test_a_repeated_image_is_not_encoded_again(asgi, pipeline, image_reference):
    path, question, max_tokens, expected = image_reference
    client = asgi(pipeline)
    body = chat([image_part(data_uri(path.read_bytes())), text_part(question)], max_tokens=max_tokens)
    answers = []
    for _ in range(2):
        response = await client.post(URL, json=body)
        answers.append(response.json()["choices"][0]["message"]["content"].strip())
    assert answers == [expected, expected]
    metrics = read_metrics((await client.get("/metrics")).text)
    assert metrics["nvila_vision_cache_misses_total"] == 1 and metrics["nvila_vision_cache_hits_total"] == 1
    assert metrics["nvila_vision_cache_bytes"] > 0
