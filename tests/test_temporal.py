"""Time tokens, intervals, localization records and navigation prompts against hand-computed cases."""

from __future__ import annotations

import pytest

from nvila.errors import ConfigError
from nvila.eval.metrics import localization_metrics
from nvila.prompt import IMAGE_TOKEN, place_media
from nvila.temporal import (
    decode_time_tokens,
    encode_time_tokens,
    format_interval,
    localization_record,
    navigation_prompt,
    parse_action,
    parse_interval,
    time_token,
    timestamp_prefix,
)


def test_time_tokens_follow_the_lita_rule():
    assert time_token(0, 60) == "<t0>" and time_token(60, 60) == "<t99>"
    assert time_token(30, 60) == "<t50>"  # round(0.5 * 99) = round(49.5) = 50 (banker's: 50)
    assert time_token(12.0, 60) == "<t20>"  # 0.2 * 99 = 19.8 -> 20
    assert time_token(75, 60) == "<t99>"  # clamped
    assert encode_time_tokens("<12> <30.5> cat", 60) == "<t20> <t50> cat"
    assert decode_time_tokens("<t20> to <t99> <t150>", 60) == "<12.12> to <60> <t150>"  # 20*60/99 = 12.1212


def test_round_trip_error_is_below_one_token():
    duration = 37.0
    for seconds in [0.0, 1.3, 17.77, 36.9]:
        back = parse_interval(decode_time_tokens(encode_time_tokens(f"<{seconds}> <{seconds}>", duration), duration))
        assert abs(back[0] - seconds) <= duration / 99 / 2 + 1e-9


def test_parse_interval_forms():
    assert parse_interval("1.5 - 3.0 seconds") == (1.5, 3.0)
    assert parse_interval("from 30 s to 12.5 s") == (12.5, 30.0)
    assert parse_interval("<90> <2>", duration=60) == (2.0, 60.0)
    assert parse_interval("at 4 seconds") is None
    assert parse_interval(format_interval(1.25, 3.0)) == (1.2, 3.0)  # one decimal, as synth answers


def test_localization_records_and_metrics():
    record = localization_record("r1", "v.mp4", "the red circle appears", 1.5, 4.0, 8.0)
    assert record["conversations"][1]["value"] == "1.5 - 4.0 seconds"
    assert place_media([record["conversations"][0]["value"]], 0, 1)[0].startswith("<vila/video>")
    tokens = localization_record("r2", "v.mp4", "x", 0.0, 8.0, 8.0, num_time_tokens=100)
    assert tokens["conversations"][1]["value"] == "<t0> <t99>"
    with pytest.raises(ConfigError):
        localization_record("r3", "v.mp4", "x", 5.0, 4.0, 8.0)
    predictions = [parse_interval("1.5 - 4.0 seconds"), parse_interval("2.0 - 6.0 seconds"), None]
    gold = [(1.5, 4.0), (0.0, 2.0), (1.0, 2.0)]
    metrics = localization_metrics(predictions, gold)
    assert metrics["mean_iou"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert metrics["precision@0.5"] == pytest.approx(1 / 3)


def test_timestamp_prefix():
    assert timestamp_prefix([0.5, 1.5]) == "The video frames were sampled at 0.5s, 1.5s.\n"
    with pytest.raises(ConfigError):
        timestamp_prefix([])


def test_navigation_prompt_and_actions():
    actions = ["move forward", "turn left", "turn right", "stop"]
    prompt = navigation_prompt("go to the kitchen", actions, 4)
    assert prompt.count(IMAGE_TOKEN) == 4 and "turn left" in prompt and "kitchen" in prompt
    assert parse_action("I will Turn Left now", actions) == "turn left"
    assert parse_action("stop, then turn right", actions) == "stop"
    assert parse_action("fly away", actions) is None
    with pytest.raises(ConfigError):
        navigation_prompt("go", ["stop"], 2)


def test_navigation_prompt_runs_through_the_model(tiny):
    from nvila.generation import GenerationOptions
    from nvila.pipeline import generate_steps
    from tests.conftest import noise_image

    model, processor = tiny
    frames = [noise_image(64, 64, seed=i) for i in range(3)]
    inputs = processor(navigation_prompt("go", ["move forward", "turn left", "stop"], 3), frames)
    # several images: one 448 resize each, in the order given (the current view last)
    assert int((inputs.input_ids == processor.image_token_id).sum()) == 3 * processor.config.tokens_per_tile
    assert inputs.image_block_sizes == [None, None, None]
    steps = list(generate_steps(model, inputs, GenerationOptions(max_new_tokens=2), [], pad_token_id=0))
    assert len(steps) == 2
