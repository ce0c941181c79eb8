"""Models with random weights from presets, and the small tokenizer they use.

Owns: `random_pretrained(preset)` -> (model, processor), for tests, CPU demos and GPU benchmarks at real
sizes. Nothing is downloaded: the tokenizer is a byte-level BPE trained on a built-in text sample.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from nvila.checkpoint import build_model, set_generation_tokens
from nvila.models.nvila.configuration_nvila import NVILAConfig, from_name
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import NVILAProcessor
from nvila.models.nvila.tokenization_nvila import train_tokenizer
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN

#: Text the built-in tokenizer is trained on: the words of the chat format and of typical questions.
SAMPLE_TEXT = (
    "You are a helpful assistant. Describe this image in detail. What is written in the document? "
    "How many objects are there? What colour is the circle? Which bar is the tallest in the chart? "
    "The answer is red, green, blue, yellow, black, white. There are one two three four five six seven "
    "eight nine ten squares, circles and triangles. When does the event start and end in the video? "
    "Move forward, turn left, turn right, stop. 0 1 2 3 4 5 6 7 8 9 % . , ; : ! ? ( ) [ ] - + = / "
)


def sample_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """A small byte-level BPE tokenizer with the official special tokens as its last 8 ids."""
    return train_tokenizer([SAMPLE_TEXT] * 4, vocab_size=vocab_size)


def random_pretrained(
    preset: str | NVILAConfig,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[NVILAForConditionalGeneration, NVILAProcessor]:
    """A randomly initialised model of a preset (any size) and a processor with a small tokenizer.

    The config's media token ids are set to the tokenizer's; the tokenizer must fit the vocabulary.
    """
    cfg = from_name(preset) if isinstance(preset, str) else preset
    tokenizer = tokenizer or sample_tokenizer(min(cfg.text.vocab_size, 512))
    if len(tokenizer) > cfg.text.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {cfg.text.vocab_size}")
    vocab = tokenizer.get_vocab()
    cfg.image_token_id, cfg.video_token_id = vocab[IMAGE_TOKEN], vocab[VIDEO_TOKEN]
    torch.manual_seed(seed)
    model = build_model(cfg, device=device, dtype=dtype)
    processor = NVILAProcessor(tokenizer, cfg)
    set_generation_tokens(model, processor)
    return model, processor
