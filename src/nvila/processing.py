"""`NVILAProcessor`: prompts + images -> model inputs (ids with expanded placeholders, tiles, block sizes).

Owns: placeholder checks, the official chat format, tokenization, expanding each `<image>` into exactly the
number of media token ids that `geometry` predicts (followed by the media-end text, a newline), batching
with padding, and decoding. Does not own pixels-to-tiles details (`image_processing`) or decoding loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from nvila.config import NVILAConfig
from nvila.errors import PromptError
from nvila.image_io import ImageInput, load_image
from nvila.image_processing import image_to_tiles, normalize_tiles
from nvila.model import BlockSize
from nvila.prompt import IMAGE_TOKEN, user_turn
from nvila.tokenizer import format_chat


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

    # ---- prompts ------------------------------------------------------------------------------------
    def _encode_one(self, prompt: str, images: Sequence[ImageInput], chat: bool) -> tuple[list[int], list, list]:
        pil_images = [load_image(image) for image in images]
        single = len(pil_images) == 1
        text = user_turn(prompt, len(pil_images))
        tiles, block_sizes, per_placeholder = [], [], []
        pieces = text.split(IMAGE_TOKEN)
        text = pieces[0]
        for image, piece in zip(pil_images, pieces[1:]):
            image_tiles, tokens = image_to_tiles(image, self.config, single_image=single)
            tiles += image_tiles
            if self.config.dynamic_s2:
                block_sizes.append(tokens.block_size)
            else:
                block_sizes += [None] * tokens.vit_tiles
            # dynamic tiling: one placeholder + newline per tile, as the official prompt builder writes it
            text += (IMAGE_TOKEN + "\n") * tokens.placeholders if tokens.placeholders > 1 else IMAGE_TOKEN
            text += piece
            per_placeholder += [tokens.embeds_per_placeholder] * tokens.placeholders
        if chat:
            text = format_chat([{"role": "user", "content": text}])
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return self._expand(ids, per_placeholder), tiles, block_sizes

    def _expand(self, ids: list[int], per_placeholder: list[int]) -> list[int]:
        """Replace the k-th image token by per_placeholder[k] image tokens + the media-end ids."""
        out: list[int] = []
        counts = iter(per_placeholder)
        for token in ids:
            if token == self.image_token_id:
                n = next(counts, None)
                if n is None:
                    raise PromptError(f"the prompt text contains an extra {IMAGE_TOKEN} token")
                out += [token] * n + self.media_end_ids
            else:
                out.append(token)
        return out

    def __call__(
        self,
        prompts: str | Sequence[str],
        images: Sequence[ImageInput] | Sequence[Sequence[ImageInput]] | None = None,
        *,
        chat: bool = True,
        padding_side: str = "left",
    ) -> ModelInputs:
        """Encode one prompt with its images, or a batch (prompts: list, images: one list per prompt).

        With `chat` the prompt becomes one user turn of the official chat format followed by the
        assistant's generation prompt.
        """
        if isinstance(prompts, str):
            prompts, images = [prompts], [list(images or [])]
        elif images is None:
            images = [[] for _ in prompts]
        if len(images) != len(prompts):
            raise PromptError(f"got {len(prompts)} prompts but {len(images)} image lists")
        encoded = [self._encode_one(p, imgs, chat) for p, imgs in zip(prompts, images)]
        limit = self.config.text.model_max_length
        for ids, _, _ in encoded:
            if len(ids) > limit:
                raise PromptError(
                    f"the prompt is {len(ids)} tokens with its visual tokens, above the model's limit of {limit}; "
                    "use fewer or smaller images or a shorter prompt"
                )
        tiles = [t for _, ts, _ in encoded for t in ts]
        block_sizes = [b for _, _, bs in encoded for b in bs]
        input_ids, attention_mask = self.pad([ids for ids, _, _ in encoded], padding_side)
        pixel_values = normalize_tiles(tiles, self.config) if tiles else None
        return ModelInputs(input_ids, attention_mask, pixel_values, block_sizes)

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
