"""Video parts ({"type": "video_url", "video_url": {"url": ...}}): answers equal `NVILAPipeline.generate` on the same
frames, streamed or not; the frame count follows the model and --max-frames; frame sampling and frame times in the
prompt follow the server's settings or the request's fields; every bad video or option is a clear 4xx.

Videos are written by the tests with PyAV (`tests.test_video_io.write_video`: 64x48, one flat colour per frame).
"""

from __future__ import annotations

import typing

import numpy as np
import pytest

from nvila.argtypes import FRAME_SAMPLINGS
from nvila.errors import ConfigError
from nvila.generation import GenerationOptions
from nvila.models.nvila.processing_nvila import video_frame_size
from nvila.serve import schema
from nvila.serve.app import flatten_messages
from nvila.serve.limits import ServeSettings
from nvila.temporal import timestamp_prefix
from nvila.video_io import load_video
from tests.serve.conftest import (
    chat,
    data_uri,
    image_part,
    png_bytes,
    scripted_pipeline,
    sse_events,
    streamed_text,
    text_part,
)
from tests.test_video_io import frame_index, write_video

pytestmark = pytest.mark.anyio
URL = "/v1/chat/completions"
QUESTION = "What happens in the video?"


def video_part(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 2 s, 50-frame mp4 (keyframe every 10 frames) and its bytes."""
    path = write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 50)
    return path, path.read_bytes()


def assert_error(response, status: int, code: str, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error


async def test_answers_equal_the_pipeline_streamed_or_not(asgi, pipeline, clip):
    cfg = pipeline.processor.config
    frames = load_video(clip[0], cfg.num_video_frames, cfg.fps, size=video_frame_size(cfg))
    assert len(frames.frames) == cfg.num_video_frames == 8
    expected = pipeline.generate(QUESTION, videos=[frames], options=GenerationOptions(max_new_tokens=4))
    sample = pipeline.processor.encode_messages([{"role": "user", "content": QUESTION}], videos=[frames])
    prompt_tokens = len(pipeline.processor.encode_messages(
        [{"role": "user", "content": QUESTION}], videos=[frames], add_generation_prompt=True
    ).input_ids)  # fmt: skip
    assert sample.video_frame_counts == [8]

    client = asgi(pipeline)
    body = chat([video_part(data_uri(clip[1], "video/mp4")), text_part(QUESTION)], max_tokens=4)
    plain = await client.post(URL, json=body)
    assert plain.status_code == 200, plain.text
    answer = plain.json()
    assert answer["choices"][0]["message"]["content"].strip() == expected
    assert answer["usage"]["prompt_tokens"] == prompt_tokens
    streamed = await client.post(URL, json={**body, "stream": True})
    assert streamed.status_code == 200
    assert streamed_text(sse_events(streamed.text)) == answer["choices"][0]["message"]["content"]


async def test_max_frames_caps_each_video_and_bounds_the_request(asgi, pipeline, clip):
    client = asgi(scripted_pipeline(pipeline, "ok"), max_frames=4)
    video = video_part(data_uri(clip[1], "video/mp4"))
    answer = await client.post(URL, json=chat([video, text_part(QUESTION)]))
    assert answer.status_code == 200, answer.text
    cfg = pipeline.processor.config
    four = load_video(clip[0], 4, cfg.fps, size=video_frame_size(cfg))
    expected = pipeline.processor.encode_messages(
        [{"role": "user", "content": QUESTION}], videos=[four], add_generation_prompt=True
    )
    assert answer.json()["usage"]["prompt_tokens"] == len(expected.input_ids)
    too_many = await client.post(URL, json=chat([video, video, text_part("compare")]))
    assert_error(too_many, 400, "too_many_frames", "8 frames, above this server's limit of 4")


async def test_local_video_paths_follow_the_image_rules(asgi, pipeline, clip, tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip[1])
    (tmp_path / "secret.mp4").write_bytes(clip[1])
    client = asgi(scripted_pipeline(pipeline, "a video"), allow_local_media=folder)
    for url in ("clip.mp4", f"file://{folder / 'clip.mp4'}"):
        ok = await client.post(URL, json=chat([video_part(url), text_part(QUESTION)]))
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "a video"
    assert_error(
        await client.post(URL, json=chat([video_part("../secret.mp4")])), 403, "local_media_refused", "video path"
    )
    assert_error(await client.post(URL, json=chat([video_part("nope.mp4")])), 400, "invalid_video_url", "not found")
    plain = asgi(scripted_pipeline(pipeline, "a video"))
    assert_error(
        await plain.post(URL, json=chat([video_part(str(folder / "clip.mp4"))])),
        400,
        "local_media_refused",
        "local video paths are not allowed",
    )


async def test_bad_videos_are_400_with_a_reason(asgi, pipeline, clip, tmp_path):
    client = asgi(scripted_pipeline(pipeline, "ok"))
    truncated = clip[1][: len(clip[1]) // 2]
    cases = [
        (data_uri(b"", "video/mp4"), "invalid_video", "video 1 is empty"),
        (
            data_uri(b"\x00\x01 definitely not a video " * 40, "video/mp4"),
            "invalid_video",
            "cannot be opened as a video",
        ),
        (data_uri(png_bytes(), "video/mp4"), "invalid_video", "is a still image"),
        (data_uri(truncated, "video/mp4"), "invalid_video", "truncated"),
        ("data:video/mp4;base64,@@@", "invalid_video_url", "not valid base64"),
        ("data:video/mp4,plain", "invalid_video_url", "must be base64"),
        ("https://example.com/clip.mp4", "remote_media_refused", "send the video inline"),
    ]
    for url, code, words in cases:
        response = await client.post(URL, json=chat([video_part(url), text_part(QUESTION)]))
        assert_error(response, 400, code, words)
        assert "/tmp" not in response.json()["error"]["message"]  # no server path in the answer


async def test_size_and_pixel_limits(asgi, pipeline, clip):
    small = asgi(scripted_pipeline(pipeline, "ok"), max_video_bytes=len(clip[1]) - 1)
    body = chat([video_part(data_uri(clip[1], "video/mp4")), text_part(QUESTION)])
    assert_error(await small.post(URL, json=body), 413, "video_too_large", f"limit of {len(clip[1]) - 1:,} bytes")
    narrow = asgi(scripted_pipeline(pipeline, "ok"), max_frame_pixels=64 * 48 - 1)
    assert_error(await narrow.post(URL, json=body), 400, "video_too_large", "64x48 = 3,072 pixels per frame")


async def test_video_placement_and_reserved_tokens(asgi, pipeline):
    request = schema.ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": [text_part("See"), video_part("data:v"), image_part("data:i")]}]}
    )
    messages, urls, video_urls = flatten_messages(request, ServeSettings())
    assert messages == [{"role": "user", "content": "See<vila/video><image>"}]
    assert (urls, video_urls) == (["data:i"], ["data:v"])
    client = asgi(scripted_pipeline(pipeline, "ok"))
    assert_error(await client.post(URL, json=chat("a <vila/video> here")), 400, "invalid_content", "video_url parts")
    answer = {"messages": [{"role": "assistant", "content": [video_part("data:v")]}]}
    assert_error(await client.post(URL, json=answer), 400, "invalid_content", "only allowed in user messages")


# ---- frame sampling and frame times -------------------------------------------------------------------------
def spy_encodings(monkeypatch, processor) -> list[tuple[str, list[list[int]]]]:
    """Record, for every conversation the server encodes, its prompt text (video tokens left out) and the frame
    indices of each of its videos."""
    seen = []
    encode = processor.encode_messages

    def spy(*args, **kwargs):
        sample = encode(*args, **kwargs)
        ids = [i for i in sample.input_ids if i != processor.config.video_token_id]
        seen.append((processor.tokenizer.decode(ids), [[frame_index(f) for f in v.frames] for v in sample.videos]))
        return sample

    monkeypatch.setattr(processor, "encode_messages", spy)
    return seen


def indices(sampling: str, n: int, total: int = 50) -> list[int]:
    """The frames `sampling` picks from the 50-frame clip (see docs/video.md)."""
    if sampling == "linspace":
        return np.round(np.linspace(0, total - 1, n)).astype(int).tolist()
    return [(2 * i + 1) * total // (2 * n) for i in range(n)]


async def test_server_settings_choose_the_frames_and_write_their_times(asgi, pipeline, clip, monkeypatch):
    seen = spy_encodings(monkeypatch, pipeline.processor)
    cfg = pipeline.processor.config
    client = asgi(scripted_pipeline(pipeline, "ok"), frame_sampling="linspace", video_timestamps=True)
    answer = await client.post(URL, json=chat([video_part(data_uri(clip[1], "video/mp4")), text_part(QUESTION)]))
    assert answer.status_code == 200, answer.text
    frames = load_video(clip[0], cfg.num_video_frames, cfg.fps, sampling="linspace", size=video_frame_size(cfg))
    [(text, [chosen])] = seen
    assert chosen == indices("linspace", 8) == [0, 7, 14, 21, 28, 35, 42, 49]
    # "The video frames were sampled at 0.0s, 0.3s, ...", then the video (its tokens left out: a newline per frame)
    assert "user\n" + timestamp_prefix(frames.timestamps) + "\n" * 8 + QUESTION in text
    expected = pipeline.processor.encode_messages(
        [{"role": "user", "content": QUESTION}], videos=[frames], add_generation_prompt=True, video_timestamps=True
    )
    assert answer.json()["usage"]["prompt_tokens"] == len(expected.input_ids)
    assert pipeline.processor.video_timestamps is False  # the shared processor's own setting is untouched


async def test_request_fields_override_the_server_defaults(asgi, pipeline, clip, monkeypatch):
    seen = spy_encodings(monkeypatch, pipeline.processor)
    video = video_part(data_uri(clip[1], "video/mp4"))
    plain = asgi(scripted_pipeline(pipeline, "ok"))
    timed = asgi(scripted_pipeline(pipeline, "ok"), frame_sampling="linspace", video_timestamps=True)
    cases = [
        (plain, {}, "centres", False),
        (plain, {"frame_sampling": "linspace", "video_timestamps": True}, "linspace", True),
        (plain, {"video_timestamps": True}, "centres", True),
        (timed, {"frame_sampling": "centres", "video_timestamps": False}, "centres", False),
        (timed, {"frame_sampling": None, "video_timestamps": None}, "linspace", True),  # null: the server's default
    ]
    for client, fields, sampling, times in cases:
        seen.clear()
        answer = await client.post(URL, json=chat([video, text_part(QUESTION)], **fields))
        assert answer.status_code == 200, answer.text
        [(text, [chosen])] = seen
        assert chosen == indices(sampling, 8), fields
        assert ("The video frames were sampled at" in text) is times, fields


async def test_bad_video_options_are_400(asgi, pipeline, clip):
    client = asgi(scripted_pipeline(pipeline, "ok"))
    video = video_part(data_uri(clip[1], "video/mp4"))
    for fields, param in [
        ({"frame_sampling": "random"}, "frame_sampling"),
        ({"frame_sampling": 2}, "frame_sampling"),
        ({"video_timestamps": "yes"}, "video_timestamps"),
        ({"video_timestamps": 1}, "video_timestamps"),
    ]:
        response = await client.post(URL, json=chat([video, text_part(QUESTION)], **fields))
        assert_error(response, 400, "invalid_request", f"invalid request: {param}: ")
        assert response.json()["error"]["param"] == param
    response = await client.post(URL, json=chat([video, text_part(QUESTION)], frame_sampling="random"))
    assert "'centres' or 'linspace'" in response.json()["error"]["message"]
    with pytest.raises(ConfigError, match="frame_sampling must be one of centres, linspace; got 'uniform'"):
        ServeSettings(frame_sampling="uniform")
    field = schema.ChatCompletionRequest.model_fields["frame_sampling"].annotation
    assert typing.get_args(typing.get_args(field)[0]) == FRAME_SAMPLINGS  # the request accepts the reader's rules
