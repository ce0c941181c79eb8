"""The engine against the pipeline: greedy answers of concurrent requests (text, images, videos, different
lengths) equal each request run alone; slots run out and requests wait; cancellation frees a slot; sampling
settings are per request; stop strings, length limits, shutdown."""

from __future__ import annotations

import threading

import pytest

from nvila.engine.events import Cancelled, EngineClosed, Failed, Finished, Started, Step
from nvila.engine.request import EventQueue
from nvila.errors import PromptError
from nvila.generation import GenerationOptions
from tests.conftest import noise_image

PROMPTS = [
    "How many squares are there?",
    "What colour is the circle?",
    "Describe this image in detail.",
    "<image> vs <image>: which bar is the tallest in the chart?",
    "When does the event start and end in the video?",
    "Move forward, turn left, turn right, stop. How many objects are there? The answer is red, green, blue.",
]
IMAGES = [
    [],
    [noise_image(150, 90, seed=1)],  # Dynamic-S2: several scales and tiles
    [noise_image(64, 64, seed=2)],
    [noise_image(40, 70, seed=3), noise_image(90, 50, seed=4)],  # two images: one tile each
    [],
    [],
]
VIDEOS = [[], [], [], [], [[noise_image(48, 48, seed=10 + k) for k in range(5)]], []]  # 5 frames, pooled by 2
MAX_TOKENS = [9, 5, 12, 7, 10, 3]


def user_sample(processor, prompt, images=(), videos=()):
    return processor.encode_messages([{"role": "user", "content": prompt}], images, videos, add_generation_prompt=True)


def test_concurrent_greedy_answers_equal_the_pipeline_alone_and_extra_requests_wait(small_pipeline, make_engine):
    options = [GenerationOptions(max_new_tokens=n) for n in MAX_TOKENS]
    expected = [small_pipeline.generate(p, i, o, videos=v) for p, i, o, v in zip(PROMPTS, IMAGES, options, VIDEOS)]
    engine = make_engine(max_batch=3)  # six requests, three slots: three wait for a slot
    assert engine.generate(PROMPTS, IMAGES, options, VIDEOS) == expected
    stats = engine.stats()
    assert stats.running == stats.waiting == 0 and stats.slots == 3
    assert stats.prefill_batches >= 2  # the waiting ones were admitted later, as slots came free


def test_one_slot_runs_requests_one_after_another(small_pipeline, make_engine):
    options = GenerationOptions(max_new_tokens=6)
    expected = [small_pipeline.generate(p, [], options) for p in PROMPTS[:3]]
    engine = make_engine(max_batch=1)
    assert engine.generate(PROMPTS[:3], None, options) == expected
    assert engine.stats().prefill_batches == 3


def test_events_come_in_order_with_token_counts(small, make_engine):
    model, processor = small
    engine = make_engine()
    events = EventQueue()
    sample = user_sample(processor, PROMPTS[0])
    engine.submit(sample, GenerationOptions(max_new_tokens=4), events)
    received = list(events)
    assert received[0] == Started(len(sample.input_ids))
    assert isinstance(received[-1], Finished)
    tokens = [e for e in received if isinstance(e, Step) and e.token]
    assert received[-1].completion_tokens == len(tokens) <= 4
    assert received[-1].reason == ("length" if len(tokens) == 4 else "stop")


def test_a_cancelled_request_frees_its_slot_and_the_others_continue(small, small_pipeline, make_engine):
    model, processor = small
    engine = make_engine(max_batch=2)
    options = GenerationOptions(max_new_tokens=6)
    expected = [small_pipeline.generate(p, [], options) for p in PROMPTS[1:3]]
    long_events, tokens_seen = [], threading.Event()

    def on_long(event):
        long_events.append(event)
        if sum(isinstance(e, Step) for e in long_events) >= 3:
            tokens_seen.set()

    long = engine.submit(user_sample(processor, PROMPTS[0]), GenerationOptions(max_new_tokens=900), on_long)
    queues = [EventQueue(), EventQueue()]
    engine.submit(user_sample(processor, PROMPTS[1]), options, queues[0])  # the second slot
    engine.submit(user_sample(processor, PROMPTS[2]), options, queues[1])  # waits for a free slot
    assert tokens_seen.wait(timeout=60)
    long.cancel()
    assert [q.text().strip() for q in queues] == expected  # the third ran in the slot the cancelled one freed
    assert isinstance(long_events[-1], Failed) and isinstance(long_events[-1].error, Cancelled)
    steps = sum(isinstance(e, Step) for e in long_events)
    assert 3 <= steps < 900
    stats = engine.stats()
    assert stats.running == stats.waiting == 0


def test_a_request_cancelled_while_waiting_ends_at_once_and_never_runs(small, make_engine):
    model, processor = small
    engine = make_engine(max_batch=1)
    busy = EventQueue()
    engine.submit(user_sample(processor, PROMPTS[0]), GenerationOptions(max_new_tokens=30), busy)
    waiting = []
    request = engine.submit(user_sample(processor, PROMPTS[1]), GenerationOptions(max_new_tokens=30), waiting.append)
    request.cancel()
    assert len(waiting) == 1 and isinstance(waiting[0], Failed)  # delivered on this thread, immediately
    busy.text()
    assert waiting == [waiting[0]]  # never started
    assert engine.stats().prefill_batches == 1


def test_a_repeated_image_hits_the_feature_cache_and_gives_the_same_answer(small, small_pipeline, make_engine):
    image, other = noise_image(120, 80, seed=7), noise_image(120, 80, seed=8)
    options = GenerationOptions(max_new_tokens=8)
    engine = make_engine()
    first = engine.generate([PROMPTS[1]], [[image]], options)
    assert (engine.stats().vision_cache_hits, engine.stats().vision_cache_misses) == (0, 1)
    again = engine.generate([PROMPTS[2]], [[image]], options)  # another question about the same image
    assert (engine.stats().vision_cache_hits, engine.stats().vision_cache_misses) == (1, 1)
    repeat = engine.generate([PROMPTS[1]], [[image]], options)
    assert repeat == first == [small_pipeline.generate(PROMPTS[1], [image], options)]
    assert again == [small_pipeline.generate(PROMPTS[2], [image], options)]
    engine.generate([PROMPTS[1]], [[other]], options)
    assert (engine.stats().vision_cache_hits, engine.stats().vision_cache_misses) == (2, 2)
    assert engine.stats().vision_cache_bytes > 0


def test_the_feature_cache_can_be_turned_off(small, make_engine):
    image = noise_image(120, 80, seed=7)
    engine = make_engine(vision_cache_bytes=0)
    answers = [engine.generate([PROMPTS[1]], [[image]], GenerationOptions(max_new_tokens=4)) for _ in range(2)]
    assert answers[0] == answers[1]
    assert (engine.stats().vision_cache_hits, engine.stats().vision_cache_misses) == (0, 2)


def test_sampling_settings_are_per_request_and_seeds_repeat(small_pipeline, make_engine):
    settings = [
        GenerationOptions(max_new_tokens=8),
        GenerationOptions(max_new_tokens=8, temperature=1.3, top_p=0.9, seed=3),
        GenerationOptions(max_new_tokens=8, temperature=0.8, top_k=20, seed=11),
        GenerationOptions(max_new_tokens=8, temperature=1.3, top_p=0.9, seed=4),
    ]
    prompts = [PROMPTS[0]] * 4
    expected = [small_pipeline.generate(p, [], o) for p, o in zip(prompts, settings)]
    engine = make_engine(max_batch=4)
    assert engine.generate(prompts, None, settings) == expected
    assert len(set(expected)) > 1


def test_stop_strings_and_max_tokens_end_sequences_like_the_pipeline(small_pipeline, make_engine):
    full = small_pipeline.generate(PROMPTS[2], [], GenerationOptions(max_new_tokens=20))
    stop = next(full[k : k + 2] for k in range(len(full) // 3, len(full) - 2) if full[k : k + 2].strip())
    options = [GenerationOptions(max_new_tokens=20, stop=[stop]), GenerationOptions(max_new_tokens=20)]
    expected = [small_pipeline.generate(PROMPTS[2], [], o) for o in options]
    engine = make_engine()
    assert engine.generate([PROMPTS[2]] * 2, None, options) == expected
    assert stop not in expected[0] and len(expected[0]) < len(expected[1])


def test_answers_are_clamped_to_the_room_left_in_a_slot(small, make_engine):
    model, processor = small
    sample = user_sample(processor, PROMPTS[0])
    engine = make_engine(max_len=len(sample.input_ids) + 3)
    events = EventQueue()
    engine.submit(sample, GenerationOptions(max_new_tokens=50), events)
    last = list(events)[-1]
    assert isinstance(last, Finished) and last.completion_tokens <= 3
    with pytest.raises(PromptError, match="sequence length"):
        engine.submit(user_sample(processor, PROMPTS[5]), GenerationOptions(), EventQueue())


def test_close_ends_running_and_waiting_requests(small, make_engine):
    model, processor = small
    engine = make_engine(max_batch=1)
    started, queues = threading.Event(), [EventQueue(), EventQueue()]

    def on_running(event):
        queues[0](event)
        if isinstance(event, Step):
            started.set()

    engine.submit(user_sample(processor, PROMPTS[0]), GenerationOptions(max_new_tokens=900), on_running)
    engine.submit(user_sample(processor, PROMPTS[1]), GenerationOptions(max_new_tokens=900), queues[1])
    assert started.wait(timeout=60)
    engine.close()
    for events in queues:
        last = list(events)[-1]
        assert isinstance(last, Failed) and isinstance(last.error, EngineClosed)
    with pytest.raises(EngineClosed):
        engine.submit(user_sample(processor, PROMPTS[0]), GenerationOptions(), EventQueue())


def test_a_request_cancelled_as_it_gets_its_slot_is_never_prefilled(small, small_pipeline, make_engine):
    model, processor = small
    engine = make_engine(max_batch=1)
    events, holder, submitted = [], [], threading.Event()

    def cancel_on_start(event):
        events.append(event)
        if isinstance(event, Started):
            submitted.wait(timeout=60)
            holder[0].cancel()  # on the scheduler thread, between admission and prefill

    holder.append(engine.submit(user_sample(processor, PROMPTS[0]), GenerationOptions(), cancel_on_start))
    submitted.set()
    options = GenerationOptions(max_new_tokens=5)
    assert engine.generate([PROMPTS[1]], None, options) == [small_pipeline.generate(PROMPTS[1], [], options)]
    assert isinstance(events[0], Started) and isinstance(events[-1], Failed) and len(events) == 2
    assert engine.stats().prefill_batches == 1  # only the second request's


def test_a_failing_event_callback_cancels_its_request_and_the_engine_goes_on(small, small_pipeline, make_engine):
    model, processor = small
    engine = make_engine(max_batch=2)
    events = []

    def broken(event):
        events.append(event)
        if isinstance(event, Step):
            raise RuntimeError("client bug")

    engine.submit(user_sample(processor, PROMPTS[0]), GenerationOptions(max_new_tokens=50), broken)
    options = GenerationOptions(max_new_tokens=5)
    assert engine.generate([PROMPTS[1]], None, options) == [small_pipeline.generate(PROMPTS[1], [], options)]
    assert engine.generate([PROMPTS[2]], None, options) == [small_pipeline.generate(PROMPTS[2], [], options)]
    assert isinstance(events[-1], Failed) and str(events[-1].error) == "client bug"
    assert sum(isinstance(e, Step) for e in events) <= 2  # cancelled within a step
