"""NVILA through transformers: `from_pretrained` by the Auto classes, `generate()` with its decoding strategies and
streamers, batches with left padding, `pipeline("image-text-to-text")`; greedy tokens checked against full forwards
of the model without a cache (the reference below)."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, TextIteratorStreamer, pipeline

from nvila.models.nvila.modeling_nvila import (
    MEDIA_INPUTS,
    NVILAForConditionalGeneration,
    NVILALiteForConditionalGeneration,
)
from nvila.models.nvila.processing_nvila import NVILAProcessor
from tests.conftest import noise_image

QUESTION = "What is in the image?"


@pytest.fixture(scope="module", params=["tiny", "tiny-lite"])
def loaded(request, official):
    model = AutoModelForImageTextToText.from_pretrained(official[request.param], dtype=torch.float32)
    return request.param, model, AutoProcessor.from_pretrained(official[request.param])


def reference_greedy(model, inputs, max_new_tokens: int) -> list[list[int]]:
    """Greedy tokens of one prompt, each step a full forward of the LLM over the prompt's embeddings and the answer
    so far (no cache)."""
    with torch.no_grad():
        embeds = model.embed(**{k: inputs[k] for k in ("input_ids", *MEDIA_INPUTS)})  # [1, l, h]
        answer = []
        for _ in range(max_new_tokens):
            token = model.llm(inputs_embeds=embeds).logits[:, -1].argmax(-1)  # [1]
            answer.append(int(token))
            embeds = torch.cat([embeds, model.get_input_embeddings()(token)[:, None]], dim=1)
    return [answer]


def new_tokens(output: torch.Tensor, inputs) -> list[list[int]]:
    return output[:, inputs["input_ids"].shape[1] :].tolist()


def test_the_auto_classes_load_the_checkpoint_class_and_its_processor(loaded):
    name, model, processor = loaded
    assert type(model) is (NVILALiteForConditionalGeneration if name == "tiny-lite" else NVILAForConditionalGeneration)
    assert isinstance(processor, NVILAProcessor) and model.dtype == torch.float32
    assert model.generation_config.eos_token_id == processor.eos_token_ids


def test_greedy_generate_gives_the_reference_tokens(loaded):
    _, model, processor = loaded
    inputs = processor(text=QUESTION, images=[noise_image(300, 200)])
    output = new_tokens(model.generate(**inputs, max_new_tokens=6, do_sample=False), inputs)
    assert output[0] == reference_greedy(model, inputs, 6)[0][: len(output[0])]  # (it may end early at EOS)


def test_a_left_padded_batch_gives_each_prompt_its_own_tokens(loaded):
    _, model, processor = loaded
    prompts = [QUESTION, "Name every colour you can see in these pictures, one by one."]
    # two images per prompt: one tile each (a single image gets the full tiling, 2304 tokens with Dynamic-S2)
    images = [[noise_image(64, 48, seed=s) for s in (1, 2)], [noise_image(48, 64, seed=s) for s in (3, 4)]]
    batch = processor(text=prompts, images=images)
    assert batch["attention_mask"][0, 0] == 0  # the shorter prompt is padded on the left
    together = new_tokens(model.generate(**batch, max_new_tokens=5, do_sample=False), batch)
    for row, (prompt, image) in enumerate(zip(prompts, images)):
        alone = processor(text=prompt, images=image)
        expected = new_tokens(model.generate(**alone, max_new_tokens=5, do_sample=False), alone)[0]
        got = together[row][: len(expected)]
        assert got == expected


def test_sampling_is_seeded_and_top_k_1_is_greedy(loaded):
    _, model, processor = loaded
    inputs = processor(text=QUESTION)  # (text only: sampling does not depend on the media)
    greedy = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.equal(model.generate(**inputs, max_new_tokens=5, do_sample=True, top_k=1), greedy)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(model.generate(**inputs, max_new_tokens=5, do_sample=True, temperature=5.0, top_k=0))
    assert torch.equal(runs[0], runs[1])


def test_a_streamer_gets_the_text_and_a_stop_string_ends_it(loaded):
    _, model, processor = loaded
    inputs = processor(text=QUESTION)  # (text only: streaming and stopping do not depend on the media)
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = processor.decode(new_tokens(output, inputs)[0])
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    worker = threading.Thread(
        target=model.generate, kwargs={**inputs, "max_new_tokens": 8, "do_sample": False, "streamer": streamer}
    )
    worker.start()
    streamed = "".join(streamer)
    worker.join()
    assert streamed == answer
    full = new_tokens(output, inputs)[0]
    # a stop string that the answer completes early: the last two characters of its first prefix ending in two
    # ASCII letters or digits (a random model also says byte pieces, which decode to U+FFFD)
    prefixes = (processor.decode(full[:k]) for k in range(1, len(full)))
    stop = next(text[-2:] for text in prefixes if text[-2:].isascii() and text[-2:].isalnum())
    stopped = model.generate(
        **inputs, max_new_tokens=8, do_sample=False, stop_strings=[stop], tokenizer=processor.tokenizer
    )
    kept = new_tokens(stopped, inputs)[0]
    assert kept == full[: len(kept)] and len(kept) < len(full)  # it ends at the first token that completes `stop`
    assert stop in processor.decode(kept) and stop not in processor.decode(kept[:-1])


def test_the_image_text_to_text_pipeline_answers_a_chat(loaded):
    _, model, processor = loaded
    image = noise_image(200, 120)
    chat = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}]}]
    answer = pipeline("image-text-to-text", model=model, processor=processor)(text=chat, max_new_tokens=6)
    inputs = processor(text=QUESTION, images=[image])
    expected = processor.decode(new_tokens(model.generate(**inputs, max_new_tokens=6, do_sample=False), inputs)[0])
    assert answer[0]["generated_text"][-1] == {"role": "assistant", "content": expected}
