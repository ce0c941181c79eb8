"""The model: media fusion, loss masking, batching, and cached vs uncached decoding."""

from __future__ import annotations

import pytest
import torch

from nvila.generation import GenerationOptions
from nvila.pipeline import generate_steps
from nvila.prompt import IGNORE_INDEX
from tests.conftest import noise_image


def test_image_positions_hold_visual_embeddings(tiny):
    model, processor = tiny
    inputs = processor("Look", [noise_image(500, 300)])
    with torch.no_grad():
        embeds = model.embed(inputs.input_ids, inputs.pixel_values, inputs.image_block_sizes)
        features = model.get_image_features(inputs.pixel_values, inputs.image_block_sizes)
        text = model.llm.get_input_embeddings()(inputs.input_ids)
    mask = inputs.input_ids[0] == processor.image_token_id
    assert torch.equal(embeds[0, mask], features)
    assert torch.equal(embeds[0, ~mask], text[0, ~mask])


def test_feature_count_mismatch_is_a_clear_error(tiny):
    model, processor = tiny
    inputs = processor("Look", [noise_image(64, 64)])
    ids = inputs.input_ids.clone()
    ids[0, (ids[0] == processor.image_token_id).nonzero()[0]] = 0  # drop one image position
    with pytest.raises(ValueError, match="image token positions"):
        model.embed(ids, inputs.pixel_values, inputs.image_block_sizes)


def test_loss_only_where_labels_are_set(tiny):
    model, processor = tiny
    inputs = processor("Count the shapes", [noise_image(64, 64)], padding_side="right")
    labels = inputs.input_ids.clone()
    labels[:, : labels.shape[1] // 2] = IGNORE_INDEX
    with torch.no_grad():
        out = model(**inputs.to_model_kwargs(), labels=labels)
    # reference: mean cross-entropy of next-token predictions over positions with a label, images excluded
    logits = out.logits[0, :-1]
    targets = labels[0, 1:].clone()
    targets[inputs.input_ids[0, 1:] == processor.image_token_id] = IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, expected)
    labels_all_masked = torch.full_like(labels, IGNORE_INDEX)
    labels_all_masked[0, -1] = 5
    with torch.no_grad():
        only_last = model(**inputs.to_model_kwargs(), labels=labels_all_masked).loss
    torch.testing.assert_close(only_last, torch.nn.functional.cross_entropy(out.logits[0, -2:-1], torch.tensor([5])))


def test_loss_backpropagates_into_all_parts(tiny):
    model, processor = tiny
    inputs = processor("Describe", [noise_image(64, 64)])
    model.zero_grad()
    model(**inputs.to_model_kwargs(), labels=inputs.input_ids).loss.backward()
    for part in (model.vision_tower, model.mm_projector, model.llm):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    model.zero_grad()


def _tokens(model, inputs, eos=(), **options):
    steps = generate_steps(model, inputs, GenerationOptions(**options), eos, pad_token_id=0)
    return torch.stack(list(steps), dim=1)


def test_cached_and_uncached_decoding_agree(tiny_lite):
    model, processor = tiny_lite
    inputs = processor("What is this?", [noise_image(600, 300)])  # 2 tiles + thumbnail
    cached = _tokens(model, inputs, max_new_tokens=8)
    uncached = _tokens(model, inputs, max_new_tokens=8, use_cache=False)
    assert cached.shape == (1, 8)
    assert torch.equal(cached, uncached)


def test_batched_and_single_generation_agree(tiny):
    model, processor = tiny
    prompts = ["Describe the picture in detail please", "<image> vs <image>?", "Hi"]
    images = [[noise_image(800, 500, 1)], [noise_image(64, 64, 2), noise_image(80, 64, 3)], []]
    batched = _tokens(model, processor(prompts, images), max_new_tokens=8)
    for row, (prompt, imgs) in enumerate(zip(prompts, images)):
        single = _tokens(model, processor(prompt, imgs), max_new_tokens=8)
        assert torch.equal(batched[row], single[0]), row


def test_sampling_is_seeded_and_eos_stops(tiny):
    model, processor = tiny
    inputs = processor("Tell a story", [])
    a = _tokens(model, inputs, max_new_tokens=10, temperature=1.0, seed=3)
    b = _tokens(model, inputs, max_new_tokens=10, temperature=1.0, seed=3)
    c = _tokens(model, inputs, max_new_tokens=10, temperature=1.0, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = _tokens(model, inputs, max_new_tokens=6)
    first = int(greedy[0, 0])
    assert _tokens(model, inputs, eos=[first], max_new_tokens=6).shape == (1, 1)


def test_video_tokens_are_pooled_frame_features(tiny):
    model, processor = tiny
    frames = [noise_image(64, 48, seed=i) for i in range(10)]
    inputs = processor("What happens?", videos=[frames])
    cfg = processor.config
    pool = 4
    model.nvila_config.video_pool_size, saved = pool, model.nvila_config.video_pool_size
    try:
        with torch.no_grad():
            pooled = model.get_video_features(inputs.video_pixel_values, inputs.video_frame_counts)
            per_frame = model.get_image_features(inputs.video_pixel_values, [None] * 10)
    finally:
        model.nvila_config.video_pool_size = saved
    t = cfg.tokens_per_tile
    per_frame = per_frame.reshape(10, t, -1)
    expected = torch.cat([per_frame[0:4].mean(0), per_frame[4:8].mean(0), per_frame[8:10].mean(0)])
    torch.testing.assert_close(pooled, expected)


def test_mixed_image_and_video_batch(tiny):
    model, processor = tiny
    cfg = processor.config
    inputs = processor(
        ["<image> then <vila/video>: what changed?", "Describe the clip"],
        images=[[noise_image(64, 64)], []],
        videos=[[[noise_image(32, 32, seed=i) for i in range(3)]], [[noise_image(32, 32, seed=9)] * 5]],
    )
    assert int((inputs.input_ids == cfg.video_token_id).sum()) == cfg.tokens_per_tile * (3 + 5)  # no pooling
    assert inputs.video_frame_counts == [3, 5]
    assert _tokens(model, inputs, max_new_tokens=3).shape == (2, 3)
