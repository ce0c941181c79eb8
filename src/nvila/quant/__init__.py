"""Post-training quantization: W8A8 vision tower (SmoothQuant) and W4A16 LLM (AWQ), in standard formats.

`int4` / `int8` (the arithmetic and AutoAWQ packing), `modules` (quantized linears, their config entries,
swapping them in before a checkpoint loads), `folding` (exact scale moves), `smooth` (tower W8A8), `awq` (LLM
W4A16), `calibration` (samples), `drift` (KL / perplexity), `job` (`nvila quantize` end to end), `cli`.
Names are imported lazily, so building the `nvila` parser does not import torch. See docs/quantization.md.
"""

from __future__ import annotations

from nvila.lazy import lazy_exports

_EXPORTS = {
    "QuantizeSettings": "nvila.quant.job",
    "quantize": "nvila.quant.job",
    "AWQLinear": "nvila.quant.modules",
    "W8A8Linear": "nvila.quant.modules",
    "add_quantize_args": "nvila.quant.cli",
    "run_quantize": "nvila.quant.cli",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
