"""Charts task: bar and line charts drawn with PIL, every value written next to its bar or point, with
questions about a named value, the largest and smallest, colours and trends.

Owns the chart layouts. Values are distinct integers in [VALUE_MIN, VALUE_MAX], so "largest" and "smallest"
are always unique; heights are value / 100 of the plot height, and values are drawn again until their
heights differ as well. Small charts use short labels (letters,
two-letter weekdays) so that at least a few bars or points fit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from nvila.synth import BACKGROUND, COLOURS, INK, PALETTE, Sample, TextBox, Turn, font, pick_turns

VALUE_MIN, VALUE_MAX = 5, 99
#: The largest and the smallest drawn value are at least this much taller / shorter than the next one.
MIN_GAP_PX = 2
MAX_BARS = 6
MAX_POINTS = 7
# fmt: off
BAR_WORDS = ("ant", "bee", "cat", "cow", "dog", "eel", "elk", "fox", "hen", "owl", "pig", "rat", "yak", "emu")
LETTERS = tuple("ABCDEFGH")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
# fmt: on


def layout(size: tuple[int, int]) -> dict:
    """Font size, margins and the plot box (left, top, right, baseline) of a chart of this size."""
    w, h = size
    px = max(8, min(w, h) // 28)
    margin = max(2, min(w, h) // 32)
    return {
        "px": px,
        "left": margin,
        "right": w - margin,
        "top": margin + px + px // 4 + 3,  # room for the value label above the tallest bar / highest point
        "baseline": h - margin - px - 4,  # room for the category labels below
    }


def _labels(
    rng: np.random.Generator, lay: dict, options: list[tuple[str, tuple[str, ...]]], most: int, ordered: bool
) -> tuple[str, list[str]]:
    """Pick the first label set (unit, pool) of `options` that fits at least 4 slots (else the last one), then
    min(3, n)..n of its labels, n the slots that fit (at most `most`, at least 2): consecutive from a random
    start when `ordered`, else a random subset in pool order."""
    f = font(lay["px"])
    gap = lay["px"] // 4 + 2

    def fits(pool: tuple[str, ...]) -> int:
        widest = max(f.getlength(s) for s in (*pool, str(VALUE_MAX)))
        return min(most, len(pool), int((lay["right"] - lay["left"]) // (widest + gap)))

    unit, pool = next(((u, p) for u, p in options if fits(p) >= 4), options[-1])
    n_max = max(2, fits(pool))
    n = int(rng.integers(min(3, n_max), n_max + 1))
    if ordered:
        start = int(rng.integers(len(pool)))
        return unit, [pool[(start + i) % len(pool)] for i in range(n)]
    return unit, [pool[i] for i in sorted(rng.choice(len(pool), n, replace=False))]


def _values(rng: np.random.Generator, n: int, lay: dict) -> list[int]:
    """n distinct values whose drawn heights differ too (so the pixels alone rank them), with the largest
    and the smallest at least MIN_GAP_PX apart from the next one."""
    for _ in range(1000):  # a few tries at most: the smallest plot (64 px image) is ~35 px high
        values = [int(v) for v in rng.choice(np.arange(VALUE_MIN, VALUE_MAX + 1), n, replace=False)]
        heights = sorted(_height(v, lay) for v in values)
        steps = np.diff(heights)
        if steps.min() >= 1 and steps[0] >= MIN_GAP_PX and steps[-1] >= MIN_GAP_PX:
            return values
    raise RuntimeError(f"no {n} values with distinct heights fit a plot of {lay['baseline'] - lay['top']} px")


def _height(value: int, lay: dict) -> int:
    """Bar height / point elevation in px above the baseline."""
    return max(1, round(value / 100 * (lay["baseline"] - lay["top"])))


def _centres(n: int, lay: dict) -> list[float]:
    slot = (lay["right"] - lay["left"]) / n
    return [lay["left"] + slot * (i + 0.5) for i in range(n)]


def make_chart(rng: np.random.Generator, size: tuple[int, int] = (448, 448), max_questions: int = 3) -> Sample:
    """A bar chart or a line chart (equally likely) and 1..max_questions questions about it."""
    scene = _bar_scene(rng, size) if rng.random() < 0.5 else _line_scene(rng, size)
    candidates = _bar_questions(scene) if scene["kind"] == "bar" else _line_questions(scene)
    return Sample(turns=pick_turns(rng, candidates, max_questions), scene=scene, images=[render(scene)])


def describe(scene: dict) -> Turn:
    """A caption turn: every bar's label, value and colour, or the line's colour and every point's value."""
    if scene["kind"] == "bar":
        listed = "; ".join(f"{b['label']}: {b['value']}, {b['colour']}" for b in scene["bars"])
        return Turn("List the bars with their values and colours.", listed, "charts/describe")
    listed = "; ".join(f"{p['label']}: {p['value']}" for p in scene["points"])
    return Turn("Describe the line and its values.", f"{scene['colour']} line. {listed}", "charts/describe")


def _bar_scene(rng: np.random.Generator, size: tuple[int, int]) -> dict:
    lay = layout(size)
    _, labels = _labels(rng, lay, [("bar", BAR_WORDS), ("bar", LETTERS)], MAX_BARS, ordered=False)
    colours = [COLOURS[i] for i in rng.permutation(len(COLOURS))[: len(labels)]]
    bars = [{"label": s, "value": v, "colour": c} for s, v, c in zip(labels, _values(rng, len(labels), lay), colours)]
    return {"kind": "bar", "size": list(size), **lay, "bars": bars}


def _line_scene(rng: np.random.Generator, size: tuple[int, int]) -> dict:
    lay = layout(size)
    unit, labels = _labels(rng, lay, [("month", MONTHS), ("day", DAYS)], MAX_POINTS, ordered=True)
    points = [{"label": s, "value": v} for s, v in zip(labels, _values(rng, len(labels), lay))]
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    return {"kind": "line", "size": list(size), **lay, "unit": unit, "colour": colour, "points": points}


def render(scene: dict) -> Image.Image:
    image = Image.new("RGB", tuple(scene["size"]), BACKGROUND)
    draw = ImageDraw.Draw(image)
    f, base = font(scene["px"]), scene["baseline"]
    items = scene["bars"] if scene["kind"] == "bar" else scene["points"]
    xs = _centres(len(items), scene)
    slot = (scene["right"] - scene["left"]) / len(items)
    tops = [base - _height(item["value"], scene) for item in items]
    if scene["kind"] == "bar":
        for x, y, bar in zip(xs, tops, items):
            half = slot * 0.35
            draw.rectangle((round(x - half), y, round(x + half), base - 1), fill=PALETTE[bar["colour"]])
    else:
        r, colour = max(2, scene["px"] // 4), PALETTE[scene["colour"]]
        draw.line(list(zip(xs, tops)), fill=colour, width=max(1, scene["px"] // 8))
        for x, y in zip(xs, tops):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    draw.line((scene["left"], base, scene["right"], base), fill=INK)
    for text, anchor, at in _texts(scene):
        # a halo keeps the value legible where the line passes behind it
        halo = {"stroke_width": 1, "stroke_fill": BACKGROUND} if anchor == "mb" else {}
        draw.text(at, text, fill=INK, font=f, anchor=anchor, **halo)
    return image


def _texts(scene: dict) -> list[tuple[str, str, tuple[float, float]]]:
    """(text, Pillow anchor, anchor point px) of everything written on a chart: each item's value above its bar or
    point ("mb": middle, bottom), then its label under the baseline ("mt": middle, top)."""
    items = scene["bars"] if scene["kind"] == "bar" else scene["points"]
    base, out = scene["baseline"], []
    r = max(2, scene["px"] // 4)  # a point's radius: its value sits above the dot
    for x, item in zip(_centres(len(items), scene), items):
        top = base - _height(item["value"], scene) - (r if scene["kind"] == "line" else 0)
        out += [(str(item["value"]), "mb", (x, top - 2)), (item["label"], "mt", (x, base + 3))]
    return out


def text_boxes(scene: dict) -> list[TextBox]:
    """Every value and label written on a chart with its box (x0, y0, x1, y1) in image px, item by item, as
    `render` draws them (the font's ink box at its anchor)."""
    f = font(scene["px"])
    boxes = []
    for text, anchor, (x, y) in _texts(scene):
        left, top, right, bottom = f.getbbox(text, anchor=anchor)
        boxes.append((text, (x + left, y + top, x + right, y + bottom)))
    return boxes


def _extremes(items: list[dict]) -> tuple[str, str]:
    """Labels of the largest and the smallest value (unique: values are distinct)."""
    ordered = sorted(items, key=lambda item: item["value"])
    return ordered[-1]["label"], ordered[0]["label"]


def _bar_questions(scene: dict) -> dict[str, list[Turn]]:
    bars = scene["bars"]
    top, bottom = _extremes(bars)
    return {
        "charts/bar_value": [
            Turn(f"What is the value of {b['label']}?", str(b["value"]), "charts/bar_value") for b in bars
        ],
        "charts/bar_max": [Turn("Which bar is the tallest?", top, "charts/bar_max")],
        "charts/bar_min": [Turn("Which bar is the shortest?", bottom, "charts/bar_min")],
        "charts/bar_colour": [
            Turn(f"What colour is the bar of {b['label']}?", b["colour"], "charts/bar_colour") for b in bars
        ],
        "charts/bar_count": [Turn("How many bars are there?", str(len(bars)), "charts/bar_count")],
    }


def _line_questions(scene: dict) -> dict[str, list[Turn]]:
    points, unit = scene["points"], scene["unit"]
    top, bottom = _extremes(points)
    return {
        "charts/line_value": [
            Turn(f"What is the value for {p['label']}?", str(p["value"]), "charts/line_value") for p in points
        ],
        "charts/line_max": [Turn(f"Which {unit} has the highest value?", top, "charts/line_max")],
        "charts/line_min": [Turn(f"Which {unit} has the lowest value?", bottom, "charts/line_min")],
        "charts/line_trend": [
            Turn(
                f"Does the value go up or down from {a['label']} to {b['label']}?",
                "up" if b["value"] > a["value"] else "down",
                "charts/line_trend",
            )
            for a, b in zip(points, points[1:])
        ],
        "charts/line_colour": [Turn("What colour is the line?", scene["colour"], "charts/line_colour")],
    }
