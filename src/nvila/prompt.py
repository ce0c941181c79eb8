"""Media placeholders in prompt text: their names and the check of a prompt against its media.

Pure string logic (no torch, no tokenizer), so commands can refuse a bad prompt before loading a model.
"""

from __future__ import annotations

from nvila.errors import PromptError

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<vila/video>"


def user_turn(prompt: str, n_images: int) -> str:
    """Check one user prompt's placeholders against its images; put the images first if it has none.

    Raises `PromptError` for an empty prompt or a placeholder count other than 0 or `n_images`.
    """
    if not prompt or not prompt.strip():
        raise PromptError("the prompt is empty")
    n_placeholders = prompt.count(IMAGE_TOKEN)
    if n_placeholders == 0:
        return IMAGE_TOKEN * n_images + prompt
    if n_placeholders != n_images:
        raise PromptError(
            f"the prompt has {n_placeholders} {IMAGE_TOKEN} placeholder(s) but {n_images} image(s) were given; "
            f"use one {IMAGE_TOKEN} per image, or none to put the images before the text"
        )
    return prompt
