"""Documents task: a page with a title and several lines of small text (random words from a fixed
vocabulary), with reading questions: the title, the first/last word of a line, the number of lines, and
which line holds a word.

Lines are counted from 1 below the title. Owns the page layout; text is drawn in Pillow's built-in font.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from nvila.synth import BACKGROUND, INK, Sample, TextBox, Turn, font, pick_turns

# fmt: off
#: The fixed vocabulary: 211 common lowercase English words of 3-7 letters, all distinct.
VOCABULARY = (
    "able", "acid", "age", "air", "amount", "animal", "answer", "apple", "area", "arm", "art", "autumn", "baby",
    "back", "ball", "band", "bank", "base", "basket", "bath", "bed", "bell", "bird", "birth", "bit", "bite",
    "black", "blade", "blood", "blue", "board", "boat", "body", "bone", "book", "boot", "bottle", "box", "boy",
    "brain", "brake", "branch", "bread", "brick", "bridge", "brush", "bucket", "bulb", "button", "cake",
    "camera", "card", "cart", "cat", "chain", "chalk", "cheese", "chest", "chin", "church", "circle", "clock",
    "cloud", "coat", "collar", "comb", "copper", "cord", "cow", "cup", "curtain", "cushion", "dog", "door",
    "drain", "drawer", "dress", "drop", "ear", "egg", "engine", "eye", "face", "farm", "feather", "finger",
    "fish", "flag", "floor", "fly", "foot", "fork", "fowl", "frame", "garden", "girl", "glove", "goat", "gold",
    "grain", "grass", "gun", "hair", "hammer", "hand", "hat", "head", "heart", "hook", "horn", "horse",
    "house", "island", "jewel", "kettle", "key", "knee", "knife", "knot", "leaf", "leg", "library", "line",
    "lip", "lock", "map", "match", "monkey", "moon", "mouth", "muscle", "nail", "neck", "needle", "nerve",
    "net", "nose", "nut", "office", "orange", "oven", "parcel", "pen", "pencil", "picture", "pig", "pin",
    "pipe", "plane", "plate", "plough", "pocket", "pot", "potato", "prison", "pump", "rail", "rat", "receipt",
    "ring", "river", "rod", "roof", "root", "sail", "school", "seed", "sheep", "shelf", "ship", "shirt",
    "shoe", "skin", "skirt", "snake", "sock", "spade", "sponge", "spoon", "spring", "square", "stamp", "star",
    "station", "stem", "stick", "stone", "store", "street", "sun", "table", "tail", "thread", "throat",
    "thumb", "ticket", "toe", "tongue", "tooth", "town", "train", "tray", "tree", "wall", "watch", "wheel",
    "whip", "window", "wing", "wire", "worm",
)
# fmt: on
#: Most body lines on a page (fewer when the page is short).
MAX_LINES = 16
#: Most words in the title.
MAX_TITLE_WORDS = 3


def layout(size: tuple[int, int]) -> dict:
    """Margins, font sizes and line positions for a page of this size (all in px)."""
    w, h = size
    margin = max(3, min(w, h) // 24)
    title_px, body_px = max(10, h // 18), max(8, h // 32)
    line_height = round(body_px * 1.4)
    top = margin + round(title_px * 1.5)  # first body line
    max_lines = max(1, min(MAX_LINES, (h - margin - top) // line_height))
    return {
        "margin": margin,
        "title_px": title_px,
        "body_px": body_px,
        "line_height": line_height,
        "top": top,
        "max_lines": max_lines,
        "width": w - 2 * margin,
    }


@functools.lru_cache(maxsize=4096)
def _width(px: int, word: str) -> float:
    return font(px).getlength(word)


def _words_that_fit(
    rng: np.random.Generator, px: int, width: float, max_words: int, style: Callable[[str], str] = str
) -> list[str]:
    """Random words, as `style` writes them, whose joined text fits in `width` px (at least one word)."""
    words: list[str] = []
    used = 0.0
    for _ in range(max_words):
        word = style(VOCABULARY[int(rng.integers(len(VOCABULARY)))])
        extra = _width(px, word) + (_width(px, " ") if words else 0.0)  # advances add up: no kerning
        if words and used + extra > width:
            break
        words.append(word)
        used += extra
    while len(words) > 1 and font(px).getlength(" ".join(words)) > width:  # a guard, in case a font kerns
        words.pop()
    return words


def make_document(
    rng: np.random.Generator, size: tuple[int, int] = (448, 448), max_questions: int = 3, max_lines: int | None = None
) -> Sample:
    """A page with a title and lines of words (2..the lines that fit, or 1..`max_lines` when it is smaller: simpler
    pages for a reading curriculum), and 1..max_questions reading questions."""
    lay = layout(size)
    n_title = int(rng.integers(1, MAX_TITLE_WORDS + 1))
    title = " ".join(_words_that_fit(rng, lay["title_px"], lay["width"], n_title, style=str.capitalize))
    most = lay["max_lines"] if max_lines is None else min(max_lines, lay["max_lines"])
    n_lines = int(rng.integers(min(2, most), most + 1))
    lines = []
    for _ in range(n_lines):
        fill = rng.uniform(0.4, 1.0)  # ragged right edge: lines of varied length
        lines.append(_words_that_fit(rng, lay["body_px"], lay["width"] * fill, max_words=100))
    scene = {"size": list(size), "title": title, "lines": lines, **lay}
    return Sample(turns=pick_turns(rng, questions(title, lines), max_questions), scene=scene, images=[render(scene)])


def describe(scene: dict) -> Turn:
    """A caption turn: the page's text, the title then one line per text line."""
    text = "\n".join([scene["title"], *(" ".join(words) for words in scene["lines"])])
    return Turn("Transcribe the page.", text, "documents/describe")


def _line_top(scene: dict, index: int) -> int:
    """The y (px) where body line `index` (from 0) is drawn."""
    return scene["top"] + index * scene["line_height"]


def render(scene: dict) -> Image.Image:
    image = Image.new("RGB", tuple(scene["size"]), BACKGROUND)
    draw = ImageDraw.Draw(image)
    m = scene["margin"]
    draw.text((m, m), scene["title"], fill=INK, font=font(scene["title_px"]))
    for i, words in enumerate(scene["lines"]):
        draw.text((m, _line_top(scene, i)), " ".join(words), fill=INK, font=font(scene["body_px"]))
    return image


def _run_boxes(words: list[str], px: int, x: float, y: float) -> list[TextBox]:
    """The boxes of words drawn as one run of text from (x, y) at `px`, one space apart."""
    space, boxes = _width(px, " "), []
    for word in words:
        width = _width(px, word)
        boxes.append((word, (x, float(y), x + width, float(y + px))))
        x += width + space
    return boxes


def word_boxes(scene: dict) -> list[TextBox]:
    """Every body word of a page with its box (x0, y0, x1, y1) in page px, line by line, as `render` draws them.

    x spans the word's advance (from the font's widths, no kerning, as `_words_that_fit` measures), y the line's
    font size from its top."""
    margin = float(scene["margin"])
    return [
        box
        for i, words in enumerate(scene["lines"])
        for box in _run_boxes(words, scene["body_px"], margin, _line_top(scene, i))
    ]


def text_boxes(scene: dict) -> list[TextBox]:
    """Every word drawn on a page: the title's words (capitalised, at the title's size), then `word_boxes`."""
    margin = float(scene["margin"])
    return _run_boxes(scene["title"].split(), scene["title_px"], margin, margin) + word_boxes(scene)


def questions(title: str, lines: list[list[str]]) -> dict[str, list[Turn]]:
    """Every question a page of this title and these lines can be asked, by template (lines in order)."""
    line_of: dict[str, set[int]] = {}
    for i, words in enumerate(lines, 1):
        for word in words:
            line_of.setdefault(word, set()).add(i)
    return {
        "documents/title": [Turn("What is the title?", title, "documents/title")],
        "documents/first_word": [
            Turn(f"What is the first word of line {i}?", words[0], "documents/first_word")
            for i, words in enumerate(lines, 1)
        ],
        "documents/last_word": [
            Turn(f"What is the last word of line {i}?", words[-1], "documents/last_word")
            for i, words in enumerate(lines, 1)
            if len(words) > 1
        ],
        "documents/num_lines": [
            Turn("How many lines of text are below the title?", str(len(lines)), "documents/num_lines")
        ],
        "documents/word_line": [
            Turn(f"Which line contains the word '{word}'?", str(next(iter(found))), "documents/word_line")
            for word, found in line_of.items()
            if len(found) == 1
        ],
    }
