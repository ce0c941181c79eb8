"""`NVILAProcessor`: prompts + images -> model inputs (ids with expanded placeholders, tiles, block sizes).

Owns: placeholder checks, the official chat format, tokenization, expanding each `<image>` into exactly the
number of media token ids that `geometry` predicts (followed by the media-end text, a newline), batching
with padding, and decoding. Does not own pixels-to-tiles details (`image_processing`) or decoding loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from nvila.config import NVILAConfig
from nvila.errors import PromptError
from nvila.image_io import ImageInput, load_image
from nvila.image_processing import image_to_tiles, normalize_tiles
from nvila.model import IGNORE_INDEX, BlockSize
from nvila.prompt import IMAGE_TOKEN, place_images
from nvila.tokenizer import render_chat


@dataclass
class ModelInputs:
    """A batch ready for `NVILAForConditionalGeneration`.

    input_ids / attention_mask: [b, l]; pixel_values: [n, 3, s, s] tiles of all images in prompt order
    (None without images); image_block_sizes: one entry per image item (see `get_image_features`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor | None
    image_block_sizes: list[BlockSize]

    def to_model_kwargs(self) -> dict:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "pixel_values": self.pixel_values,
            "image_block_sizes": self.image_block_sizes,
        }


@dataclass
class EncodedSample:
    """One tokenized conversation: ids with media expanded, labels (-100 where no loss), its tiles."""

    input_ids: list[int]
    labels: list[int]
    tiles: list[Image.Image]
    block_sizes: list[BlockSize]


class NVILAProcessor:
    """Turns (prompt, images) pairs into model inputs and token ids back into text."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: NVILAConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id != config.image_token_id:
            raise ValueError(
                f"tokenizer's {IMAGE_TOKEN} id {self.image_token_id} differs from the config's {config.image_token_id}"
            )
        self.media_end_ids: list[int] = tokenizer(config.media_end_text, add_special_tokens=False).input_ids
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else tokenizer.eos_token_id
        self.eos_token_ids: list[int] = [tokenizer.eos_token_id]

    # ---- conversations ------------------------------------------------------------------------------
    def encode_messages(
        self,
        messages: Sequence[dict[str, str]],
        images: Sequence[ImageInput] = (),
        *,
        add_generation_prompt: bool = False,
    ) -> EncodedSample:
        """Tokenize a conversation ({"role": "user" | "assistant" | "system", "content"}) with its images.

        `<image>` placeholders may sit in any non-assistant message (none: the images go before the first
        message's text). Labels hold the assistant answers (and their end token); everything else, media
        included, is -100.
        """
        pil_images = [load_image(image) for image in images]
        roles = [m["role"] for m in messages]
        texts = place_images([m["content"] for m in messages], len(pil_images))
        for role, text in zip(roles, texts):
            if role == "assistant" and IMAGE_TOKEN in text:
                raise PromptError(f"an assistant answer contains {IMAGE_TOKEN}; images belong in user turns")
        single = len(pil_images) == 1
        remaining = iter(pil_images)
        tiles, block_sizes, per_placeholder = [], [], []
        expanded = []
        for text in texts:
            pieces = text.split(IMAGE_TOKEN)
            out = pieces[0]
            for piece in pieces[1:]:
                image_tiles, tokens = image_to_tiles(next(remaining), self.config, single_image=single)
                tiles += image_tiles
                if self.config.dynamic_s2:
                    block_sizes.append(tokens.block_size)
                else:
                    block_sizes += [None] * tokens.vit_tiles
                # dynamic tiling: one placeholder + newline per tile, as the official prompt builder writes it
                out += (IMAGE_TOKEN + "\n") * tokens.placeholders if tokens.placeholders > 1 else IMAGE_TOKEN
                out += piece
                per_placeholder += [tokens.embeds_per_placeholder] * tokens.placeholders
            expanded.append(out)
        text, spans = render_chat(
            [{"role": r, "content": t} for r, t in zip(roles, expanded)], add_generation_prompt=add_generation_prompt
        )
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        labels = [
            token if any(lo <= a and b <= hi for lo, hi in spans) else IGNORE_INDEX
            for token, (a, b) in zip(encoding.input_ids, encoding.offset_mapping)
        ]
        ids, labels = self._expand(encoding.input_ids, labels, per_placeholder)
        return EncodedSample(ids, labels, tiles, block_sizes)

    def _expand(self, ids: list[int], labels: list[int], per_placeholder: list[int]) -> tuple[list[int], list[int]]:
        """Replace the k-th image token by per_placeholder[k] image tokens + the media-end ids (no labels)."""
        out_ids: list[int] = []
        out_labels: list[int] = []
        counts = iter(per_placeholder)
        for token, label in zip(ids, labels):
            if token == self.image_token_id:
                n = next(counts, None)
                if n is None:
                    raise PromptError(f"the prompt text contains an extra {IMAGE_TOKEN} token")
                span = [token] * n + self.media_end_ids
                out_ids += span
                out_labels += [IGNORE_INDEX] * len(span)
            else:
                out_ids.append(token)
                out_labels.append(label)
        return out_ids, out_labels

    def check_length(self, sample: EncodedSample) -> None:
        """Raise `PromptError` when the sample (visual tokens included) exceeds the model's length limit."""
        limit = self.config.text.model_max_length
        if len(sample.input_ids) > limit:
            raise PromptError(
                f"the prompt is {len(sample.input_ids)} tokens with its visual tokens, above the model's limit of "
                f"{limit}; use fewer or smaller images or a shorter prompt"
            )

    def __call__(
        self,
        prompts: str | Sequence[str],
        images: Sequence[ImageInput] | Sequence[Sequence[ImageInput]] | None = None,
        *,
        padding_side: str = "left",
    ) -> ModelInputs:
        """Encode one prompt with its images, or a batch (prompts: list, images: one list per prompt).

        Each prompt becomes one user turn of the official chat format, followed by the assistant's
        generation prompt.
        """
        if isinstance(prompts, str):
            prompts, images = [prompts], [list(images or [])]
        elif images is None:
            images = [[] for _ in prompts]
        if len(images) != len(prompts):
            raise PromptError(f"got {len(prompts)} prompts but {len(images)} image lists")
        encoded = [
            self.encode_messages([{"role": "user", "content": p}], imgs, add_generation_prompt=True)
            for p, imgs in zip(prompts, images)
        ]
        for sample in encoded:
            self.check_length(sample)
        input_ids, attention_mask = self.pad([e.input_ids for e in encoded], padding_side)
        tiles = [t for e in encoded for t in e.tiles]
        pixel_values = normalize_tiles(tiles, self.config) if tiles else None
        return ModelInputs(input_ids, attention_mask, pixel_values, [b for e in encoded for b in e.block_sizes])

    def pad(self, sequences: Sequence[Sequence[int]], padding_side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
        """Pad id lists to [b, l] with the pad id; returns (input_ids, attention_mask)."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            span = slice(length - len(seq), length) if padding_side == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        return ids, mask

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Token ids -> text, without special tokens."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode(ids, skip_special_tokens=True)
