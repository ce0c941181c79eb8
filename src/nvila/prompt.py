"""Media placeholders in prompt text: their names and the check of a conversation against its media.

Pure string logic (no torch, no tokenizer), so commands can refuse a bad prompt before loading a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from nvila.errors import PromptError

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<vila/video>"


def place_images(texts: Sequence[str], n_images: int) -> list[str]:
    """Check the `<image>` placeholders of a conversation's texts against its images.

    Texts without any placeholder get the images put before the first text (media first, as the official
    code orders prompt parts). Raises `PromptError` for an empty text or a placeholder count other than 0 or
    `n_images`.
    """
    if not texts:
        raise PromptError("the conversation is empty")
    for k, text in enumerate(texts):
        if not text or not text.strip():
            raise PromptError("the prompt is empty" if len(texts) == 1 else f"message {k + 1} is empty")
    n_placeholders = sum(text.count(IMAGE_TOKEN) for text in texts)
    if n_placeholders == 0:
        return [IMAGE_TOKEN * n_images + texts[0], *texts[1:]]
    if n_placeholders != n_images:
        raise PromptError(
            f"the prompt has {n_placeholders} {IMAGE_TOKEN} placeholder(s) but {n_images} image(s) were given; "
            f"use one {IMAGE_TOKEN} per image, or none to put the images before the text"
        )
    return list(texts)


def user_turn(prompt: str, n_images: int) -> str:
    """`place_images` for a single user prompt."""
    return place_images([prompt], n_images)[0]
