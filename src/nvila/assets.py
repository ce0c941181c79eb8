"""Files shipped inside the package: the default model and sample media."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "resources"
#: The model `nvila generate` uses when no --model is given.
DEFAULT_MODEL = ASSETS / "models" / "nvila-tiny-untrained"
SAMPLE_IMAGE = ASSETS / "sample.png"
