"""Processor: placeholder checks, chat format, expansion counts == geometry == model features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvila.errors import ConfigError, MediaError, PromptError
from nvila.models.nvila.geometry import image_tokens
from nvila.models.nvila.processing_nvila import NVILAProcessor
from nvila.models.nvila.tokenization_nvila import format_chat
from nvila.temporal import timestamp_prefix
from nvila.video_io import VideoFrames, load_video
from tests.conftest import noise_image
from tests.test_video_io import RATE, frame_index, write_video


def count(ids: torch.Tensor, token: int) -> int:
    return int((ids == token).sum())


@pytest.mark.parametrize("size", [(448, 448), (1344, 896), (300, 1000), (1920, 1080), (50, 3000)])
def test_expansion_matches_geometry_and_model(tiny, tiny_lite, size):
    image = noise_image(*size)
    for model, processor in (tiny, tiny_lite):
        cfg = processor.config
        inputs = processor("Describe.", [image])
        expected = image_tokens(*size, cfg)
        assert count(inputs.input_ids, cfg.image_token_id) == expected.llm_tokens
        assert inputs.pixel_values.shape == (expected.vit_tiles, 3, cfg.tile_size, cfg.tile_size)
        with torch.no_grad():
            features = model.get_image_features(inputs.pixel_values, inputs.image_block_sizes)
        assert features.shape == (expected.llm_tokens, cfg.text.hidden_size)


def test_chat_format_and_newlines(tiny, tiny_lite):
    _, processor = tiny
    ids = processor("Hi <image> there", [noise_image(64, 64)]).input_ids[0].tolist()
    text = processor.tokenizer.decode([i for i in ids if i != processor.image_token_id])
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
        "Hi \n there<|im_end|>\n<|im_start|>assistant\n"
    )  # the newline after the image is the media-end embedding
    _, lite = tiny_lite
    ids = lite("Q", [noise_image(1344, 896)]).input_ids[0].tolist()
    # 7 tiles, each: t image tokens (121 at 448 px, 9 for the tiny 112 px tiles), media-end newline, then the
    # prompt's own newline
    newline, t = lite.media_end_ids, lite.config.tokens_per_tile
    runs = [i for i in range(len(ids)) if ids[i] == lite.image_token_id and ids[i - 1] != lite.image_token_id]
    assert len(runs) == 7
    for start in runs:
        assert ids[start : start + t] == [lite.image_token_id] * t
        assert ids[start + t : start + t + 2] == newline + newline


def test_images_go_first_without_placeholders(tiny):
    _, processor = tiny
    a = processor("What?", [noise_image(64, 64)]).input_ids
    b = processor("<image>What?", [noise_image(64, 64)]).input_ids
    assert torch.equal(a, b)


@pytest.mark.parametrize("prompt,n", [("<image><image> compare", 1), ("<image> and", 2), ("", 0), ("   ", 1)])
def test_placeholder_mismatch_and_empty_prompts(tiny, prompt, n):
    _, processor = tiny
    with pytest.raises(PromptError):
        processor(prompt, [noise_image(32, 32, seed=i) for i in range(n)])


def test_batch_left_padding_and_multi_image(tiny):
    _, processor = tiny
    inputs = processor(
        ["one image", "<image> two <image> images", "none"],
        [[noise_image(900, 600)], [noise_image(64, 64), noise_image(64, 80)], []],
    )
    assert inputs.input_ids.shape[0] == 3
    assert inputs.attention_mask[:, -1].all()  # left padded: every row ends with a real token
    lengths = inputs.attention_mask.sum(1)
    assert lengths[0] > lengths[1] > lengths[2]  # Dynamic-S2 image > two 1-tile images > text only
    # the first image is Dynamic-S2 (1 + 4 + grid tiles); the two others are single one-tile resizes
    grid = image_tokens(900, 600, processor.config)
    assert inputs.image_block_sizes == [grid.block_size, None, None]
    assert inputs.pixel_values.shape[0] == grid.vit_tiles + 2


def test_prompt_longer_than_the_model_limit(tiny):
    _, processor = tiny
    processor.config.text.model_max_length, limit = 100, processor.config.text.model_max_length
    try:
        with pytest.raises(PromptError, match="above the model's limit of 100"):
            processor("Describe", [noise_image(64, 64)])
    finally:
        processor.config.text.model_max_length = limit


def test_labels_cover_exactly_the_assistant_answers(tiny):
    _, processor = tiny
    messages = [
        {"role": "user", "content": "<image>How many circles?"},
        {"role": "assistant", "content": "three"},
        {"role": "user", "content": "And squares?"},
        {"role": "assistant", "content": "two squares"},
    ]
    sample = processor.encode_messages(messages, [noise_image(64, 64)])
    assert len(sample.labels) == len(sample.input_ids)
    labelled = [t for t, label in zip(sample.input_ids, sample.labels) if label != -100]
    assert all(label in (-100, token) for token, label in zip(sample.input_ids, sample.labels))
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert processor.tokenizer.decode(labelled) == "three<|im_end|>two squares<|im_end|>"
    assert labelled.count(im_end) == 2
    assert processor.image_token_id in sample.input_ids and processor.image_token_id not in labelled


def test_images_in_assistant_answers_are_refused(tiny):
    _, processor = tiny
    with pytest.raises(PromptError, match="assistant"):
        processor.encode_messages(
            [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<image>"}], [noise_image(8, 8)]
        )


# ---- videos --------------------------------------------------------------------------------------------
def clip(times: list[float], seed: int = 0) -> VideoFrames:
    frames = [noise_image(32, 32, seed=seed + i) for i in range(len(times))]
    return VideoFrames(frames, times, duration=times[-1] + 0.5, source_fps=1.0, requested=len(times))


def test_video_timestamps_go_before_each_video_placeholder(tiny):
    _, processor = tiny
    timed = NVILAProcessor(processor.tokenizer, processor.config, video_timestamps=True)
    videos = [clip([0.5, 1.5]), clip([0.3, 2.0, 4.0], seed=5)]
    prompt = "<vila/video> then <vila/video>: when does it move?"
    plain = processor(prompt, videos=videos).input_ids[0].tolist()
    ids = timed(prompt, videos=videos).input_ids[0].tolist()
    video_id = processor.config.video_token_id
    text = processor.tokenizer.decode([i for i in ids if i != video_id])
    # each prefix, then its video's tokens (removed here) with the media-end newline after every frame
    assert (
        "user\nThe video frames were sampled at 0.5s, 1.5s.\n" + "\n" * 2 + " then The video frames were sampled at "
        "0.3s, 2.0s, 4.0s.\n" + "\n" * 3 + ": when does it move?<|im_end|>" in text
    )
    assert ids.count(video_id) == plain.count(video_id) == 5 * processor.config.tokens_per_tile
    assert len(ids) > len(plain)
    assert processor(prompt, videos=videos).input_ids[0].tolist() == plain  # the default stays without times


def test_video_timestamps_can_be_set_per_call(tiny):
    _, processor = tiny
    timed = NVILAProcessor(processor.tokenizer, processor.config, video_timestamps=True)
    messages = [{"role": "user", "content": "<vila/video> When?"}]
    videos = [clip([0.5, 1.5])]

    def text(p: NVILAProcessor, **kwargs) -> str:
        return p.tokenizer.decode(p.encode_messages(messages, videos=videos, **kwargs).input_ids)

    prefix = "The video frames were sampled at 0.5s, 1.5s."
    assert prefix in text(processor, video_timestamps=True) and prefix not in text(processor)
    assert prefix not in text(timed, video_timestamps=False) and prefix in text(timed)
    assert processor.video_timestamps is False and timed.video_timestamps is True  # settings untouched


def test_video_sampling_chooses_the_frames_of_a_video_path(tiny, tmp_path):
    _, processor = tiny
    n = processor.config.num_video_frames
    path = write_video(tmp_path / "v.mp4", 24)
    assert processor.video_sampling == "centres"
    assert [frame_index(f) for f in processor.load_video(path).frames] == [
        (2 * i + 1) * 24 // (2 * n) for i in range(n)
    ]
    linspace = NVILAProcessor(processor.tokenizer, processor.config, video_sampling="linspace", video_timestamps=True)
    official = np.round(np.linspace(0, 23, n)).astype(int).tolist()  # the official loader's indices
    chosen = linspace.load_video(path)
    assert [frame_index(f) for f in chosen.frames] == official and official[0] == 0 and official[-1] == 23
    ids = linspace("When?", videos=[path]).input_ids[0].tolist()
    text = processor.tokenizer.decode([i for i in ids if i != processor.config.video_token_id])
    assert timestamp_prefix(chosen.timestamps) in text  # the times of the frames chosen reach the prompt
    assert chosen.timestamps == pytest.approx([k / RATE for k in official])  # each chosen frame's own time


def test_bad_video_sampling_is_refused(tiny):
    _, processor = tiny
    with pytest.raises(ConfigError, match="video_sampling must be one of centres, linspace; got 'random'"):
        NVILAProcessor(processor.tokenizer, processor.config, video_sampling="random")
    other = NVILAProcessor(processor.tokenizer, processor.config)
    with pytest.raises(ConfigError, match="got 'uniform'"):
        other.video_sampling = "uniform"
    assert other.video_sampling == "centres"


def test_video_timestamps_need_frame_times(tiny):
    _, processor = tiny
    timed = NVILAProcessor(processor.tokenizer, processor.config, video_timestamps=True)
    with pytest.raises(MediaError, match="video_timestamps needs each frame's time"):
        timed("When?", videos=[[noise_image(32, 32), noise_image(32, 32, seed=1)]])


def test_video_files_are_resized_to_the_tile_while_decoding_with_identical_pixels(tiny, tmp_path):
    _, processor = tiny
    cfg = processor.config
    path = write_video(tmp_path / "v.mp4", 12, textured=True, size=(640, 352))
    decoded = processor.load_video(path)
    assert [f.size for f in decoded.frames] == [(cfg.tile_size, cfg.tile_size)] * cfg.num_video_frames
    full = load_video(path, cfg.num_video_frames, cfg.fps)  # frames at 640x352, resized by the processor
    assert full.frames[0].size == (640, 352)
    early, late = processor("Q", videos=[path]), processor("Q", videos=[full])
    assert torch.equal(early.video_pixel_values, late.video_pixel_values)
    assert torch.equal(early.input_ids, late.input_ids)


# ---- the transformers processor interface -----------------------------------------------------------------------
def test_apply_chat_template_renders_the_official_format_and_tokenizes_like_a_plain_prompt(tiny):
    _, processor = tiny
    image = noise_image(300, 200)
    chat = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What is it?"}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True)
    assert text == format_chat([{"role": "user", "content": "<image>What is it?"}], add_generation_prompt=True)
    plain = processor("<image>What is it?", [image])
    for inputs in (processor(text=text, images=[image]), processor.apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=True
    )):  # fmt: skip
        assert torch.equal(inputs["input_ids"], plain["input_ids"])
        assert torch.equal(inputs["pixel_values"], plain["pixel_values"])


def test_continue_final_message_leaves_the_answer_open(tiny):
    _, processor = tiny
    chat = [{"role": "user", "content": "Count."}, {"role": "assistant", "content": "There are"}]
    assert processor.apply_chat_template(chat, continue_final_message=True).endswith("<|im_start|>assistant\nThere are")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda p: p(text="<|im_start|>user\nHi<|im_end|>\n", images=[noise_image(8, 8)]), PromptError,
         "holds 0 <image> and 0 <vila/video> placeholders for 1 images"),
        (lambda p: p(text="Hi", return_tensors="np"), ValueError, "returns PyTorch tensors"),
        (lambda p: p(text="Hi", max_pixels=5), TypeError, "unexpected arguments: max_pixels"),
        (lambda p: p(), PromptError, "give the prompt text"),
        (lambda p: p.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}]), PromptError,
         "unknown message part type 'audio'"),
        (lambda p: p.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}]), PromptError,
         "the image part .* needs one of the keys"),
    ],
)  # fmt: skip
def test_what_the_processor_cannot_take_is_named(tiny, call, error, message):
    with pytest.raises(error, match=message):
        call(tiny[1])


def test_the_image_processor_gives_what_the_model_takes(tiny, tiny_lite):
    for model, processor in (tiny, tiny_lite):
        image = noise_image(900, 500)
        out = processor.image_processor([image])
        plain = processor("<image>", [image])
        assert torch.equal(out["pixel_values"], plain["pixel_values"])
        assert out["image_block_sizes"] == plain["image_block_sizes"]
        assert processor.image_processor.to_dict()["image_aspect_ratio"] == model.nvila_config.image_aspect_ratio


def test_the_processor_prints_its_settings(tiny_lite):
    text = repr(tiny_lite[1])
    assert text.startswith("NVILAProcessor:") and '"image_aspect_ratio": "dynamic"' in text
    assert "NVILAImageProcessor" in repr(tiny_lite[1].image_processor)
