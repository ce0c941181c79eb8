"""The model runner over its preallocated KV cache: prefill and decode logits equal full forward passes
without a cache, for sequences of different lengths in any slots (RoPE positions per sequence, GQA, a free
slot between running ones, a slot reused after it was freed), with sdpa or eager attention."""

from __future__ import annotations

import pytest
import torch

from nvila.engine.feature_cache import FeatureCache
from nvila.engine.kv_cache import DecodeWrite, PrefillWrite, SlotKVCache
from nvila.engine.media import PromptMedia
from nvila.engine.runner import ModelRunner, Prompt, Runner
from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from tests.engine.conftest import small_config


def reference(model, ids: list[int]) -> torch.Tensor:
    """[v] logits of the last position by one forward pass over the whole sequence, no cache."""
    with torch.no_grad():
        return model.llm(input_ids=torch.tensor([ids])).logits[0, -1]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_prefill_and_decode_equal_full_forward_passes(attention):
    model, _ = random_pretrained(small_config(), seed=2)
    model.llm.set_attn_implementation(attention)
    runner = ModelRunner(model, slots=3, max_len=72)
    assert isinstance(runner, Runner)
    generator = torch.Generator().manual_seed(0)
    seqs = {slot: torch.randint(0, 500, (n,), generator=generator).tolist() for slot, n in ((0, 5), (2, 11))}
    features = FeatureCache(0)

    def check(logits: torch.Tensor, slots: list[int]) -> None:
        for row, slot in enumerate(slots):
            torch.testing.assert_close(logits[row], reference(model, seqs[slot]), atol=1e-5, rtol=1e-5)

    def decode(tokens: list[int], compare: bool = True) -> None:
        for slot, token in zip((0, 2), tokens):
            seqs[slot].append(token)
        logits = runner.decode([0, 2], tokens)
        if compare:
            check(logits, [0, 2])

    prompts = [Prompt(slot, ids, PromptMedia()) for slot, ids in seqs.items()]
    check(runner.prefill(prompts, features), [0, 2])  # right-padded batch of two lengths
    assert runner.cache.lengths.tolist() == [5, 0, 11]
    for step in range(3):  # slot 1 is free between them
        decode([7 + step, 300 - step])
    runner.free(0)
    seqs[0] = [1, 2, 3]  # a new, shorter sequence in the freed slot
    check(runner.prefill([Prompt(0, seqs[0], PromptMedia())], features), [0])
    while len(seqs[2]) < runner.max_len:  # slot 2 fills its 72 positions: attended spans of 64, then 72
        decode([5, 11 + len(seqs[2])], compare=len(seqs[2]) in (62, 63, 64, runner.max_len - 1))
    assert runner.cache.lengths.tolist() == [len(seqs[0]), 0, runner.max_len]


def test_the_cache_writes_prompts_into_their_slots_and_tokens_at_their_positions():
    cache = SlotKVCache(num_layers=1, slots=3, max_len=8, kv_heads=2, head_dim=4)
    keys = torch.randn(2, 2, 5, 4)  # [b, k, l, d]
    cache.write = PrefillWrite(torch.tensor([2, 0]))
    out_keys, _ = cache.update(keys, keys + 1, 0)
    assert out_keys is keys  # a new prompt attends to itself only
    torch.testing.assert_close(cache.keys[0][2, :, :5], keys[0])
    torch.testing.assert_close(cache.values[0][0, :, :5], keys[1] + 1)
    new = torch.randn(3, 2, 1, 4)  # [n, k, 1, d]: one token for slots 0, 1, 2
    out_keys, out_values = cache.store(new, new, 0, DecodeWrite(torch.tensor([5, 0, 6]), span=7))
    assert out_keys.shape == (3, 2, 7, 4) and out_keys.data_ptr() == cache.keys[0].data_ptr()  # a view
    torch.testing.assert_close(cache.keys[0][0, :, 5], new[0, :, 0])
    torch.testing.assert_close(cache.keys[0][2, :, 6], new[2, :, 0])
    torch.testing.assert_close(cache.keys[0][2, :, :5], keys[0])  # the prompt is untouched
    cache.write = None
    with pytest.raises(RuntimeError, match="write must be a PrefillWrite"):
        cache.update(new, new, 0)


def test_the_cache_is_allocated_once_at_full_size():
    model, _ = random_pretrained(small_config(), seed=2)
    runner = ModelRunner(model, slots=4, max_len=100)
    text = model.nvila_config.text
    head_dim = text.hidden_size // text.num_attention_heads
    assert runner.cache.nbytes == 2 * text.num_hidden_layers * 4 * text.num_key_value_heads * 100 * head_dim * 4
    assert ModelRunner(model, slots=1, max_len=10**6).max_len == text.model_max_length  # never past the context


def test_compile_is_ignored_off_cuda_and_unsupported_attention_is_refused(caplog):
    model, _ = random_pretrained(small_config(), seed=2)
    with caplog.at_level("WARNING", logger="nvila.engine"):
        runner = ModelRunner(model, slots=1, compile=True)
    assert "CUDA only" in caplog.text
    assert runner._decode_step == runner._decode_forward
    model.llm.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="sdpa"):
        ModelRunner(model, slots=1)
