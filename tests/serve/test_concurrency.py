"""Many clients at once, the admission bound, timeouts and clients that leave mid-answer: every slot and every
token generator is freed, and answers never mix between requests."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from nvila.generation import GenerationOptions
from tests.serve.conftest import (
    chat,
    live_server,
    read_metrics,
    scripted_pipeline,
    sse_events,
    streamed_text,
    wait_until,
)

URL = "/v1/chat/completions"
PROMPTS = [f"How many {thing} are there?" for thing in ("squares", "circles", "triangles", "objects")] + [
    f"What colour is the {thing}?" for thing in ("circle", "square", "bar", "event")
]


def test_64_concurrent_clients_on_loopback_all_get_their_own_answer(pipeline):
    expected = {p: pipeline.generate(p, [], GenerationOptions(max_new_tokens=3)) for p in PROMPTS}

    async def run(url: str) -> list[tuple[str, str]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

            async def one(k: int) -> tuple[str, str]:
                prompt, stream = PROMPTS[k % len(PROMPTS)], k % 2 == 1
                response = await client.post(URL, json=chat(prompt, max_tokens=3, stream=stream))
                assert response.status_code == 200, response.text
                if stream:
                    return prompt, streamed_text(sse_events(response.text))
                return prompt, response.json()["choices"][0]["message"]["content"]

            return await asyncio.gather(*(one(k) for k in range(64)))

    with live_server(pipeline) as server:
        answers = asyncio.run(run(server.url))
        metrics = read_metrics(httpx.get(server.url + "/metrics").text)
        in_flight = server.app.state.admission.in_flight
    assert len(answers) == 64
    for prompt, answer in answers:
        assert answer.strip() == expected[prompt], prompt
    assert metrics['nvila_http_requests_total{path="/v1/chat/completions",status="200"}'] == 64
    assert metrics["nvila_requests_in_flight"] == 0 and in_flight == 0
    assert sum(v for k, v in metrics.items() if k.startswith("nvila_http_requests_total") and 'status="5' in k) == 0


@pytest.mark.anyio
async def test_requests_beyond_the_bound_get_429_and_slots_come_back(asgi, pipeline):
    pipe = scripted_pipeline(pipeline, "slow answer here", delay=0.02)
    client = asgi(pipe, max_concurrent=2)
    admission = client.app.state.admission
    busy = [asyncio.create_task(client.post(URL, json=chat("hi", max_tokens=20))) for _ in range(2)]
    for _ in range(500):
        if admission.in_flight == 2:
            break
        await asyncio.sleep(0.01)
    refused = await client.post(URL, json=chat("hi"))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200]
    assert admission.in_flight == 0
    assert (await client.post(URL, json=chat("hi"))).status_code == 200


@pytest.mark.anyio
async def test_timeouts_are_504_and_stop_generation_queued_or_running(asgi, pipeline):
    pipe = scripted_pipeline(pipeline, "and on", delay=0.01, repeat=True, slots=1)  # the second one waits
    client = asgi(pipe, timeout_s=0.4, max_tokens_cap=100_000)
    running = asyncio.create_task(client.post(URL, json=chat("hi", max_tokens=100_000)))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(client.post(URL, json=chat("hi", max_tokens=100_000)))
    for response in await asyncio.gather(running, queued):
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["code"] == "timeout" and error["type"] == "timeout_error" and "0.4 s" in error["message"]
    admission = client.app.state.admission
    for _ in range(100):  # the running job frees its slot when its current step ends
        if admission.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert admission.in_flight == 0
    await asyncio.sleep(0.1)
    assert pipe.model.started == pipe.model.closed >= 1  # every token generator was closed
    steps = pipe.model.steps
    await asyncio.sleep(0.1)
    assert pipe.model.steps == steps  # nothing is generating any more
    streamed = await client.post(URL, json=chat("hi", max_tokens=100_000, stream=True))
    events = sse_events(streamed.text)
    assert streamed.status_code == 200 and events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "timeout" and "and on" in streamed_text(events[:-1])
    metrics = read_metrics((await client.get("/metrics")).text)
    assert metrics['nvila_requests_aborted_total{reason="timeout"}'] == 3


@pytest.mark.anyio
async def test_a_queued_request_whose_client_leaves_never_runs(asgi, pipeline):
    pipe = scripted_pipeline(pipeline, "step", delay=0.01, repeat=True, slots=1)  # the second one waits
    client = asgi(pipe)
    admission = client.app.state.admission
    running = asyncio.create_task(client.post(URL, json=chat("hi", max_tokens=30)))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(client.post(URL, json=chat("hi", max_tokens=30)))
    for _ in range(100):
        if admission.in_flight == 2:
            break
        await asyncio.sleep(0.01)
    assert admission.in_flight == 2
    queued.cancel()  # the client goes away while its request waits for the engine
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert admission.in_flight == 1  # its slot is back at once, while the first request still runs
    assert (await running).status_code == 200
    await asyncio.sleep(0.05)
    assert pipe.model.started == 1 and admission.in_flight == 0


def test_clients_leaving_mid_answer_stop_their_generation_and_free_their_slot(pipeline):
    pipe = scripted_pipeline(pipeline, "more", delay=0.005, repeat=True)
    model = pipe.model
    with live_server(pipe, max_tokens_cap=1_000_000, max_concurrent=1) as server:
        admission = server.app.state.admission
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = chat("go on", max_tokens=1_000_000, stream=True)
            with client.stream("POST", URL, json=body) as response:
                assert response.status_code == 200
                received = ""
                for text in response.iter_text():
                    received += text
                    if received.count("data: ") >= 4:
                        break
            # the stream was closed after a few tokens: the server notices and stops generating
            assert wait_until(lambda: model.closed == 1 and admission.in_flight == 0), (
                model.closed,
                admission.in_flight,
            )
            steps = model.steps
            assert steps < 5_000

            with pytest.raises(httpx.ReadTimeout):  # a non-streaming client that gives up waiting
                client.post(URL, json=chat("go on", max_tokens=1_000_000), timeout=0.3)
            assert wait_until(lambda: model.closed == 2 and admission.in_flight == 0), (
                model.closed,
                admission.in_flight,
            )

            # the single slot is free again: a normal request goes through
            ok = client.post(URL, json=chat("go on", max_tokens=3))
            expected = pipe.processor.decode([model.token_ids[k % len(model.token_ids)] for k in range(3)])
            assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == expected
            metrics = read_metrics(client.get("/metrics").text)
    assert metrics['nvila_requests_aborted_total{reason="disconnect"}'] == 2
    assert metrics["nvila_requests_in_flight"] == 0
    assert model.started == model.closed == 3
