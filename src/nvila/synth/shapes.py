"""Shapes task: coloured circles, squares and triangles on a plain background, with counting, colour, shape
and presence questions; some samples show two images and compare them.

Owns the shape geometry (`draw_shape`, also used by the events videos) and the scene -> question rules. Binding
questions ("What colour is the square?") are asked only when their answer is unique in the image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from nvila.synth import BACKGROUND, COLOURS, PALETTE, Sample, Turn, pick_turns

SHAPES = ("circle", "square", "triangle")
#: Largest number of shapes in one image (fewer when they do not fit).
MAX_OBJECTS = 6
#: Probability that a sample shows two images and asks about both.
PAIR_PROBABILITY = 0.2
#: Half side of a square, as a fraction of the radius of the circle it replaces (similar area to the circle).
SQUARE_HALF = 0.8


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, fill: tuple[int, int, int]) -> None:
    """Draw `shape` centred at (x, y): a circle of radius r, a square of half side round(SQUARE_HALF * r) or an
    equilateral triangle pointing up inscribed in the circle of radius r. The centre pixel is always inside."""
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape == "square":
        h = round(r * SQUARE_HALF)
        draw.rectangle((x - h, y - h, x + h, y + h), fill=fill)
    elif shape == "triangle":
        dx = r * math.sqrt(3) / 2
        draw.polygon([(x, y - r), (x + dx, y + r / 2), (x - dx, y + r / 2)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def extent(shape: str, r: float) -> float:
    """Distance from the centre to the farthest drawn point (the square's corners reach past r)."""
    return round(r * SQUARE_HALF) * math.sqrt(2) if shape == "square" else r


def radius_range(size: tuple[int, int]) -> tuple[int, int]:
    """(smallest, largest) shape radius for an image of this size."""
    side = min(size)
    low = max(5, side // 20)  # 5: circles and squares still differ in their corners
    return low, max(low + 1, side // 9)


def make_scene(rng: np.random.Generator, size: tuple[int, int]) -> dict:
    """Random non-overlapping shapes: {"size", "objects": [{"shape", "colour", "x", "y", "r"}]}."""
    w, h = size
    low, high = radius_range(size)
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    objects: list[dict] = []
    for _ in range(wanted * 20):  # rejection sampling; gives up quietly when the image is full
        if len(objects) == wanted:
            break
        shape, colour = SHAPES[int(rng.integers(len(SHAPES)))], COLOURS[int(rng.integers(len(COLOURS)))]
        r = int(rng.integers(low, high + 1))
        x, y = int(rng.integers(r + 1, w - r - 1)), int(rng.integers(r + 1, h - r - 1))
        reach = extent(shape, r)
        if all(math.hypot(x - o["x"], y - o["y"]) >= reach + extent(o["shape"], o["r"]) + 2 for o in objects):
            objects.append({"shape": shape, "colour": colour, "x": x, "y": y, "r": r})
    return {"size": [w, h], "objects": objects}


def render_scene(scene: dict) -> Image.Image:
    image = Image.new("RGB", tuple(scene["size"]), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for o in scene["objects"]:
        draw_shape(draw, o["shape"], o["x"], o["y"], o["r"], PALETTE[o["colour"]])
    return image


def describe(scene: dict) -> Turn:
    """A caption turn: every shape of every image as "colour shape", top to bottom (then left to right)."""
    parts = []
    for k, image in enumerate(scene["images"]):
        names = [f"{o['colour']} {o['shape']}" for o in sorted(image["objects"], key=lambda o: (o["y"], o["x"]))]
        listed = ", ".join(names) if names else "nothing"
        parts.append(f"Image {k + 1}: {listed}." if len(scene["images"]) > 1 else f"{listed}.")
    return Turn("List the shapes from top to bottom.", " ".join(parts), "shapes/describe")


def make_shapes(rng: np.random.Generator, size: tuple[int, int] = (448, 448), max_questions: int = 3) -> Sample:
    """One image (or, with probability PAIR_PROBABILITY, two) of shapes and 1..max_questions questions."""
    if rng.random() < PAIR_PROBABILITY:
        scenes = [make_scene(rng, size), make_scene(rng, size)]
        candidates = _pair_questions(rng, scenes)
    else:
        scenes = [make_scene(rng, size)]
        candidates = _single_questions(rng, scenes[0]["objects"])
    turns = pick_turns(rng, candidates, max_questions)
    return Sample(turns=turns, scene={"images": scenes}, images=[render_scene(s) for s in scenes])


def _count(objects: list[dict], shape: str | None = None, colour: str | None = None) -> int:
    return sum((shape is None or o["shape"] == shape) and (colour is None or o["colour"] == colour) for o in objects)


def _single_questions(rng: np.random.Generator, objects: list[dict]) -> dict[str, list[Turn]]:
    present_colours = sorted({o["colour"] for o in objects}, key=COLOURS.index)
    absent_colours = [c for c in COLOURS if c not in present_colours]
    colours = present_colours + absent_colours[: int(rng.integers(0, 2))]  # sometimes ask about a missing one
    return {
        "shapes/count_total": [Turn("How many shapes are there?", str(len(objects)), "shapes/count_total")],
        "shapes/count_shape": [
            Turn(f"How many {s}s are there?", str(_count(objects, shape=s)), "shapes/count_shape") for s in SHAPES
        ],
        "shapes/count_colour": [
            Turn(f"How many {c} shapes are there?", str(_count(objects, colour=c)), "shapes/count_colour")
            for c in colours
        ],
        "shapes/colour_of": [
            Turn(f"What colour is the {s}?", next(o["colour"] for o in objects if o["shape"] == s), "shapes/colour_of")
            for s in SHAPES
            if _count(objects, shape=s) == 1
        ],
        "shapes/shape_of": [
            Turn(
                f"What shape is the {c} one?", next(o["shape"] for o in objects if o["colour"] == c), "shapes/shape_of"
            )
            for c in present_colours
            if _count(objects, colour=c) == 1
        ],
        "shapes/exists": _exists_questions(rng, objects),
    }


def _exists_questions(rng: np.random.Generator, objects: list[dict]) -> list[Turn]:
    """One 'yes' and one 'no' question (so answers are balanced); the 'no' prefers a wrong binding of a
    colour and a shape that are both present."""
    pairs = {(o["colour"], o["shape"]) for o in objects}
    present = sorted(pairs)
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in pairs]
    binding = [(c, s) for c, s in absent if _count(objects, colour=c) and _count(objects, shape=s)]
    pool = binding if binding and rng.random() < 0.5 else absent
    yes = present[int(rng.integers(len(present)))]
    no = pool[int(rng.integers(len(pool)))]
    return [Turn(f"Is there a {c} {s}?", answer, "shapes/exists") for (c, s), answer in ((yes, "yes"), (no, "no"))]


def _pair_questions(rng: np.random.Generator, scenes: list[dict]) -> dict[str, list[Turn]]:
    first, second = (s["objects"] for s in scenes)
    compare = [
        Turn(
            f"Which image has more {s}s?",
            "first" if _count(first, shape=s) > _count(second, shape=s) else "second",
            "shapes/compare_count",
        )
        for s in SHAPES
        if _count(first, shape=s) != _count(second, shape=s)
    ]
    total = str(len(first) + len(second))
    return {
        "shapes/compare_count": compare,
        "shapes/total_two": [Turn("How many shapes are there in the two images together?", total, "shapes/total_two")],
    }
