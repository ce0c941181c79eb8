"""Media placeholders in prompt text: their names, the check of a conversation against its media, and the label
of prompt positions that carry no loss (`IGNORE_INDEX`).

Pure string logic (no torch, no tokenizer), so commands can refuse a bad prompt before loading a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nvila.errors import PromptError

#: The label of a position without a loss (media, prompt, padding): what torch's cross-entropy ignores.
IGNORE_INDEX = -100

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<vila/video>"


def place_media(texts: Sequence[str], n_images: int, n_videos: int = 0) -> list[str]:
    """Check a conversation's `<image>` / `<vila/video>` placeholders against its media.

    A kind of media without any placeholder goes before the first text (images, then videos: media first,
    as the official code orders prompt parts). Raises `PromptError` for an empty text or a placeholder count
    other than 0 or the number of items.
    """
    if not texts:
        raise PromptError("the conversation is empty")
    for k, text in enumerate(texts):
        if not text or not text.strip():
            raise PromptError("the prompt is empty" if len(texts) == 1 else f"message {k + 1} is empty")
    texts = list(texts)
    prefix = ""
    for token, n, kind in ((IMAGE_TOKEN, n_images, "image"), (VIDEO_TOKEN, n_videos, "video")):
        n_placeholders = sum(text.count(token) for text in texts)
        if n_placeholders == 0:
            prefix += token * n
        elif n_placeholders != n:
            raise PromptError(
                f"the prompt has {n_placeholders} {token} placeholder(s) but {n} {kind}(s) were given; "
                f"use one {token} per {kind}, or none to put the {kind}s before the text"
            )
    texts[0] = prefix + texts[0]
    return texts


def user_turn(prompt: str, n_images: int, n_videos: int = 0) -> str:
    """`place_media` for a single user prompt."""
    return place_media([prompt], n_images, n_videos)[0]


#: The media placeholders (and the whitespace after each) a user message may start with.
LEADING_MEDIA = re.compile(f"^(?:(?:{re.escape(IMAGE_TOKEN)}|{re.escape(VIDEO_TOKEN)})\\s*)*")


def inline_media(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """`messages` with the first user message's leading placeholders straight before its text, without the
    whitespace after them ("<image>\\nWhat?" -> "<image>What?"): the form `place_media` gives a prompt that has
    no placeholder (and the official `generate_content`), so a model trained on both forms answers either."""
    out = [dict(m) for m in messages]
    for message in out:
        if message["role"] == "user":
            lead = LEADING_MEDIA.match(message["content"]).group(0)
            message["content"] = "".join(lead.split()) + message["content"][len(lead) :]
            break
    return out


def single_turns(messages: Sequence[dict[str, str]]) -> list[list[dict[str, str]]] | None:
    """A conversation of several question / answer turns about its media, as one single-turn conversation per
    turn: the system messages, then the first question's leading placeholders before each question, then its
    answer. None when it cannot be split so: fewer than two turns, roles that do not alternate user / assistant,
    or a placeholder anywhere but at the start of the first question."""
    system = [dict(m) for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    pairs = list(zip(turns[0::2], turns[1::2]))
    if len(turns) % 2 or len(pairs) < 2 or any((u["role"], a["role"]) != ("user", "assistant") for u, a in pairs):
        return None
    first = pairs[0][0]["content"]
    lead = LEADING_MEDIA.match(first).group(0)
    questions = [first[len(lead) :]] + [u["content"] for u, _ in pairs[1:]]
    if any(IMAGE_TOKEN in text or VIDEO_TOKEN in text for text in questions):
        return None
    return [[*system, {"role": "user", "content": lead + q}, dict(a)] for q, (_, a) in zip(questions, pairs)]
