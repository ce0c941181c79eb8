"""Files shipped inside the package: the default model and sample media."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "resources"
#: The model `nvila generate` / `nvila serve` / `nvila eval` use when no --model is given: the project's own
#: small NVILA (64 px tiles, 3.2 MB), trained by scripts/train_small_model.sh on `nvila synth` data.
DEFAULT_MODEL = ASSETS / "models" / "nvila-small"
SAMPLE_IMAGE = ASSETS / "sample.png"  #: a held-out `nvila synth` shapes image (2 circles, 2 triangles)
#: The first held-out `nvila synth` document of data/synth-small (title "Hand Dog Throat", 9 lines below it).
SAMPLE_DOCUMENT = ASSETS / "sample_document.png"
#: A held-out `nvila synth` line chart of data/synth-small (charts-h000002: a yellow line).
SAMPLE_CHART = ASSETS / "sample_chart.png"
