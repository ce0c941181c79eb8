"""Synthetic vision-language data: deterministic generators of images and videos with short, exact answers.

Owns what the generators share: the `Sample` / `Turn` types every generator returns, the colour palette, the
font, question picking and the media placeholders. Each task is one module with one pure function of a seeded
`numpy.random.Generator` and a size: `documents.make_document`, `charts.make_chart`, `shapes.make_shapes`,
`videos.make_events`. Writing a dataset to disk, splits and the `nvila synth` command live in `writer`.
Nothing here imports torch or the model.

Conventions: sizes are (width, height) in pixels; every answer is a short exact string that can be read off
the pixels; a sample's `scene` is a JSON-able description of what was drawn (tests re-derive the answers
from it, and it can label auxiliary tower objectives); template ids are "<source>/<name>".
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFont

logger = logging.getLogger(__name__)

#: Colour names -> RGB, saturated and far apart so they survive small sizes and 4:2:0 video compression.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 130, 20),
}
COLOURS = tuple(PALETTE)
BACKGROUND = (255, 255, 255)
#: A written word or number and its box (x0, y0, x1, y1) in image px.
TextBox = tuple[str, tuple[float, float, float, float]]
INK = (20, 20, 20)


@dataclass(frozen=True)
class Turn:
    """One question and its exact answer."""

    question: str  #: without media placeholders (the writer adds them to the first turn)
    answer: str
    template: str  #: question template id, "<source>/<name>", e.g. "shapes/count_shape"


@dataclass
class Sample:
    """What a generator returns: the media, the questions and a description of what was drawn."""

    turns: list[Turn]
    scene: dict  #: JSON-able; enough to re-derive every answer
    images: list[Image.Image] = field(default_factory=list)  #: RGB (image tasks)
    frames: np.ndarray | None = None  #: [t, h, w, 3] uint8 (video tasks)
    fps: int = 0  #: frames per second of `frames`
    meta: dict = field(default_factory=dict)  #: extra fields for the record's "meta" (e.g. events, duration)


@functools.lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at `size` px (Pillow >= 10.1 ships a scalable one; older ones a fixed bitmap)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow 10.0: no size argument
        logger.warning("Pillow < 10.1: text is drawn in the fixed-size bitmap font, not %d px", size)
        return ImageFont.load_default()


def pick_turns(
    rng: np.random.Generator, candidates: dict[str, list[Turn]], max_questions: int, first: dict | None = None
) -> list[Turn]:
    """1..max_questions turns with distinct templates, each template drawn uniformly, then one of its turns.

    `candidates` maps template id -> eligible turns (empty lists are ignored). With `first`, the first turn
    comes from those templates (e.g. a localization question) and the rest from `candidates`.
    """
    turns: list[Turn] = []
    if first is not None:
        turns += _draw(rng, first, 1)
        max_questions -= 1
    if max_questions > 0:
        k = int(rng.integers(0 if first is not None else 1, max_questions + 1))
        used = {t.template for t in turns}
        turns += _draw(rng, {name: c for name, c in candidates.items() if name not in used}, k)
    return turns


def _draw(rng: np.random.Generator, candidates: dict[str, list[Turn]], k: int) -> list[Turn]:
    names = [name for name, turns in candidates.items() if turns]
    chosen = rng.permutation(len(names))[: min(k, len(names))]
    return [candidates[names[i]][int(rng.integers(len(candidates[names[i]])))] for i in chosen]


def interval(start: float, end: float) -> str:
    """The answer format of localization questions: '1.5 - 3.0 seconds'."""
    return f"{start:.1f} - {end:.1f} seconds"
