"""GET endpoints, the API key, and the metrics moving with the requests they count."""

from __future__ import annotations

import pytest

from nvila.serve import schema
from nvila.serve.metrics import Counter, Histogram
from tests.serve.conftest import MODEL, chat, read_metrics, scripted_pipeline

pytestmark = pytest.mark.anyio
URL = "/v1/chat/completions"
CHAT_OK = 'nvila_http_requests_total{path="/v1/chat/completions",status="200"}'
CHAT_400 = 'nvila_http_requests_total{path="/v1/chat/completions",status="400"}'


async def test_models_health_and_demo_page(asgi, pipeline):
    client = asgi(scripted_pipeline(pipeline, "ok"))
    models = schema.ModelList.model_validate((await client.get("/v1/models")).json())
    assert [m.id for m in models.data] == [MODEL]
    assert (await client.get("/health")).json() == {"status": "ok", "model": MODEL}
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="question"' in page.text and "/web/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no scripts or styles from other hosts
    script = await client.get("/web/app.js")
    assert script.status_code == 200 and "/v1/chat/completions" in script.text
    assert (await client.get("/web/style.css")).status_code == 200


async def test_api_key_guards_v1_only(asgi, pipeline):
    client = asgi(scripted_pipeline(pipeline, "ok"), api_key="s3cret")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic s3cret"},
        {"Authorization": "s3cret"},
    ):
        for response in (
            await client.get("/v1/models", headers=headers),
            await client.post(URL, json=chat("hi"), headers=headers),
        ):
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "invalid_api_key"
    good = {"Authorization": "Bearer s3cret"}
    assert (await client.get("/v1/models", headers=good)).status_code == 200
    answer = await client.post(URL, json=chat("hi"), headers=good)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "ok"
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get("/")).status_code == 200


async def test_metrics_count_requests_tokens_and_times(asgi, pipeline):
    client = asgi(scripted_pipeline(pipeline, "one two three"))
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    before = read_metrics(response.text)
    assert before["nvila_requests_in_flight"] == 0 and before["nvila_max_concurrent_requests"] == 64

    answer = (await client.post(URL, json=chat("hi"))).json()
    streamed = await client.post(URL, json=chat("hi", stream=True))
    assert streamed.status_code == 200
    assert (await client.post(URL, json=chat("hi", temperature=9))).status_code == 400
    assert (await client.get("/nowhere")).status_code == 404

    after = read_metrics((await client.get("/metrics")).text)
    assert after.get(CHAT_OK, 0) - before.get(CHAT_OK, 0) == 2
    assert after.get(CHAT_400, 0) - before.get(CHAT_400, 0) == 1
    assert after['nvila_http_requests_total{path="other",status="404"}'] == 1
    assert after['nvila_http_requests_total{path="/metrics",status="200"}'] == 1  # the first scrape
    usage = answer["usage"]
    assert (
        after["nvila_generated_tokens_total"] - before["nvila_generated_tokens_total"] == 2 * usage["completion_tokens"]
    )
    assert after["nvila_prompt_tokens_total"] - before["nvila_prompt_tokens_total"] == 2 * usage["prompt_tokens"]
    for name in ("nvila_time_to_first_token_seconds", "nvila_request_latency_seconds"):
        assert after[f"{name}_count"] - before[f"{name}_count"] == 2
        assert after[f'{name}_bucket{{le="+Inf"}}'] == after[f"{name}_count"]
        assert after[f"{name}_sum"] > before[f"{name}_sum"]
    assert after["nvila_requests_in_flight"] == 0


def test_prometheus_text_format_of_the_metric_types():
    counter = Counter("c_total", "help.", ("path",))
    counter.inc(path='a"b')
    counter.inc(2, path='a"b')
    assert counter.render()[-1] == 'c_total{path="a\\"b"} 3'
    histogram = Histogram("h_seconds", "help.", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        histogram.observe(value)
    lines = histogram.render()
    assert lines[2:] == [
        'h_seconds_bucket{le="0.1"} 1',
        'h_seconds_bucket{le="1"} 2',
        'h_seconds_bucket{le="+Inf"} 3',
        "h_seconds_sum 5.55",
        "h_seconds_count 3",
    ]
