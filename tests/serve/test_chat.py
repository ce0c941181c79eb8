"""/v1/chat/completions with the tiny random model: answers equal the pipeline's, streamed or not; stop
strings, usage counts, conversations, sampling parameters."""

from __future__ import annotations

import pytest
import torch

from nvila.generation import GenerationOptions
from nvila.serve import schema
from nvila.serve.app import flatten_messages
from nvila.serve.limits import ServeSettings
from tests.serve.conftest import (
    MODEL,
    chat,
    data_uri,
    image_part,
    sse_events,
    streamed_text,
    text_part,
)

pytestmark = pytest.mark.anyio
PROMPT = "How many squares are there?"


async def both(client, body: dict) -> tuple[dict, list]:
    """The non-streamed answer and the streamed events of the same request."""
    plain = await client.post("/v1/chat/completions", json=body)
    assert plain.status_code == 200, plain.text
    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"].startswith("text/event-stream")
    return plain.json(), sse_events(streamed.text)


def greedy_reference(pipeline, messages: list[dict], max_new_tokens: int) -> tuple[str, int, int]:
    """Greedy answer to a conversation by full forward passes (no cache, not the server's code path):
    (text, prompt tokens, generated tokens)."""
    processor = pipeline.processor
    ids = processor.encode_messages(messages, add_generation_prompt=True).input_ids
    prompt, out = len(ids), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(pipeline.model(torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(token)
            if token in processor.eos_token_ids:
                break
    return processor.decode(out), prompt, len(out)


async def test_text_answer_equals_pipeline_generate_streamed_or_not(asgi, pipeline):
    expected = pipeline.generate(PROMPT, [], GenerationOptions(max_new_tokens=12))
    client = asgi(pipeline)
    plain, events = await both(client, chat(PROMPT, max_tokens=12))
    answer = schema.ChatCompletion.model_validate(plain)
    assert answer.model == MODEL and answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content.strip() == expected != ""
    assert streamed_text(events) == answer.choices[0].message.content
    assert events[-1] == "[DONE]"
    chunks = [schema.ChatCompletionChunk.model_validate(e) for e in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert sum(1 for c in chunks if c.choices[0].delta.content) > 1  # sent piece by piece
    assert chunks[-1].choices[0].finish_reason == answer.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


async def test_image_answer_equals_pipeline_generate(asgi, pipeline, image_reference):
    path, question, max_tokens, expected = image_reference
    client = asgi(pipeline)
    body = chat([image_part(data_uri(path.read_bytes())), text_part(question)], max_tokens=max_tokens)
    plain, events = await both(client, {**body, "stream_options": {"include_usage": True}})
    content = plain["choices"][0]["message"]["content"]
    assert content.strip() == expected
    assert streamed_text(events) == content
    sample = pipeline.processor.encode_messages(
        [{"role": "user", "content": "<image>" + question}], [path], add_generation_prompt=True
    )
    text_only = pipeline.processor.encode_messages([{"role": "user", "content": question}], add_generation_prompt=True)
    usage = plain["usage"]
    assert usage["prompt_tokens"] == len(sample.input_ids) > len(text_only.input_ids) + 100  # visual tokens counted
    assert usage["completion_tokens"] == max_tokens and plain["choices"][0]["finish_reason"] == "length"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert events[-2]["choices"] == [] and events[-2]["usage"] == usage  # include_usage: a last chunk


def stop_candidate(text: str) -> str:
    """A 3-letter piece from the middle of `text` to use as a stop string."""
    for start in range(len(text) // 3, len(text) - 3):
        piece = text[start : start + 3]
        if piece.isalpha() and piece.isascii():
            return piece
    pytest.skip(f"no plain-letter stop string in {text!r}")


async def test_stop_strings_cut_the_answer(asgi, pipeline):
    client = asgi(pipeline)
    full = (await client.post("/v1/chat/completions", json=chat(PROMPT, max_tokens=24))).json()
    text = full["choices"][0]["message"]["content"]
    stop = stop_candidate(text)
    expected = text[: text.find(stop)]
    for stops in (stop, ["never appears", stop]):
        plain, events = await both(client, chat(PROMPT, max_tokens=24, stop=stops))
        assert plain["choices"][0]["message"]["content"] == expected
        assert plain["choices"][0]["finish_reason"] == "stop"
        assert streamed_text(events) == expected and stop not in streamed_text(events)
        assert events[-2]["choices"][0]["finish_reason"] == "stop"
        assert plain["usage"]["completion_tokens"] < full["usage"]["completion_tokens"]


async def test_multi_turn_conversation_is_flattened_for_the_model(asgi, pipeline):
    messages = [
        {"role": "developer", "content": "You are terse."},
        {"role": "user", "content": [text_part("How many circles?"), text_part("Count them.")]},
        {"role": "assistant", "content": "Three."},
        {"role": "user", "content": "And squares?"},
    ]
    flat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "How many circles?\nCount them."},
        {"role": "assistant", "content": "Three."},
        {"role": "user", "content": "And squares?"},
    ]
    expected, prompt_tokens, generated = greedy_reference(pipeline, flat, 8)
    client = asgi(pipeline)
    plain, events = await both(client, {"messages": messages, "max_tokens": 8})
    assert plain["choices"][0]["message"]["content"] == streamed_text(events) == expected
    assert plain["usage"]["prompt_tokens"] == prompt_tokens
    assert plain["usage"]["completion_tokens"] == generated


def test_image_parts_become_placeholders_where_they_were():
    request = schema.ChatCompletionRequest.model_validate(
        {
            "messages": [
                {"role": "user", "content": [text_part("Compare"), image_part("data:a"), text_part("with")]},
                {"role": "user", "content": [image_part("data:b")]},
            ]
        }
    )
    messages, urls, video_urls = flatten_messages(request, ServeSettings())
    assert [m["content"] for m in messages] == ["Compare<image>with", "<image>"]
    assert urls == ["data:a", "data:b"] and video_urls == []


async def test_seeded_sampling_repeats_and_parameters_reach_the_model(asgi, pipeline):
    client = asgi(pipeline)
    body = chat(PROMPT, max_tokens=10, temperature=1.5, top_p=0.9, seed=7)
    first = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]["content"]
    again = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]["content"]
    greedy = (await client.post("/v1/chat/completions", json=chat(PROMPT, max_tokens=10))).json()
    assert first == again
    expected = pipeline.generate(PROMPT, [], GenerationOptions(max_new_tokens=10, temperature=1.5, top_p=0.9, seed=7))
    assert first.strip() == expected
    assert first != greedy["choices"][0]["message"]["content"]


async def test_max_completion_tokens_wins_and_defaults_apply(asgi, pipeline):
    client = asgi(pipeline, default_max_tokens=5)
    default = (
        await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": PROMPT}]})
    ).json()
    assert default["usage"]["completion_tokens"] == 5 and default["choices"][0]["finish_reason"] == "length"
    both_given = chat(PROMPT, max_tokens=9, max_completion_tokens=3)
    assert (await client.post("/v1/chat/completions", json=both_given)).json()["usage"]["completion_tokens"] == 3
