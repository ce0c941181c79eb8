"""Write the package's sample image and its placeholder default model (random weights, `tiny` preset).

The placeholder keeps `nvila generate` and `make demo` working end to end until the project's own trained
small model replaces it. Deterministic: the same files come out every run.

    python scripts/make_placeholder_assets.py
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from nvila.assets import DEFAULT_MODEL, SAMPLE_IMAGE
from nvila.checkpoint import save
from nvila.factory import random_pretrained


def sample_image() -> Image.Image:
    """A 448x336 page: a title, two lines of text and a three-bar chart."""
    image = Image.new("RGB", (448, 336), "white")
    draw = ImageDraw.Draw(image)
    draw.text((16, 12), "Quarterly sales", fill="black")
    draw.text((16, 32), "Red: 3   Green: 5   Blue: 2", fill="black")
    for i, (value, colour) in enumerate([(3, "red"), (5, "green"), (2, "blue")]):
        x = 60 + i * 120
        draw.rectangle((x, 316 - value * 50, x + 70, 316), fill=colour)
    draw.line((40, 316, 420, 316), fill="black", width=2)
    return image


def main() -> None:
    SAMPLE_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    sample_image().save(SAMPLE_IMAGE, optimize=True)
    model, processor = random_pretrained("tiny", seed=0)
    save(model, processor.tokenizer, DEFAULT_MODEL, overwrite=True)
    print(f"wrote {SAMPLE_IMAGE} and {DEFAULT_MODEL}")


if __name__ == "__main__":
    main()
