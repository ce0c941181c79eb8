"""Text-level generation: stop strings, streaming == non-streaming, batches."""

from __future__ import annotations

import pytest

from nvila.factory import sample_tokenizer
from nvila.generation import GenerationOptions
from nvila.pipeline import NVILAPipeline, TextStream
from tests.conftest import noise_image

TOKENIZER = sample_tokenizer()
EOS = {TOKENIZER.eos_token_id}


def decode(ids):
    return TOKENIZER.decode(ids, skip_special_tokens=True)


def feed(text: str, stop: list[str], eos_at_end: bool = False) -> tuple[list[str], TextStream]:
    stream = TextStream(stop)
    ids = TOKENIZER(text, add_special_tokens=False).input_ids + ([TOKENIZER.eos_token_id] if eos_at_end else [])
    deltas = [stream.push(i, EOS, decode) for i in ids]
    deltas.append(stream.finish(decode))
    return deltas, stream


def test_stream_reassembles_the_text():
    text = "The answer is red, green and blue. Count: 42!"
    deltas, _ = feed(text, [])
    assert "".join(deltas) == text
    assert sum(1 for d in deltas if d) > 3  # delivered in pieces, not at the end


def test_stop_string_cuts_and_is_never_emitted():
    text = "First part. STOP here and more text"
    deltas, stream = feed(text, ["STOP"])
    assert "".join(deltas) == "First part. "
    assert stream.done
    for i in range(len(deltas)):  # no prefix of the stop string ever leaked out
        assert "S" not in "".join(deltas[: i + 1])


def test_earliest_of_several_stop_strings_wins():
    deltas, _ = feed("alpha beta gamma delta", ["delta", "beta"])
    assert "".join(deltas) == "alpha "


def test_partial_stop_prefix_is_released_when_it_does_not_complete():
    deltas, _ = feed("a STOne b", ["STOP"])
    assert "".join(deltas) == "a STOne b"


def test_eos_ends_the_stream():
    deltas, stream = feed("done", [], eos_at_end=True)
    assert "".join(deltas) == "done" and stream.done


def test_multibyte_characters_are_not_split():
    deltas, _ = feed("naïve café ☕ 日本", [])
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == "naïve café ☕ 日本"


@pytest.fixture(scope="module")
def pipe(tiny):
    return NVILAPipeline(*tiny)


def test_streaming_equals_generate(pipe):
    image = noise_image(640, 480)
    options = GenerationOptions(max_new_tokens=20)
    full = pipe.generate("Describe", [image], options)
    streamed = "".join(pipe.stream("Describe", [image], options))
    assert streamed.strip() == full
    assert len(full) > 0


def test_stop_strings_end_model_output(pipe):
    image = noise_image(640, 480)
    full = pipe.generate("Describe", [image], GenerationOptions(max_new_tokens=20))
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip(), full
    cut = pipe.generate("Describe", [image], GenerationOptions(max_new_tokens=20, stop=[stop]))
    assert cut == full[: full.index(stop)].strip()


def test_generate_batch_matches_single(pipe):
    prompts = ["Describe", "What colour?"]
    images = [[noise_image(640, 480, 1)], [noise_image(300, 300, 2)]]
    options = GenerationOptions(max_new_tokens=10)
    assert pipe.generate_batch(prompts, images, options) == [
        pipe.generate(p, imgs, options) for p, imgs in zip(prompts, images)
    ]
