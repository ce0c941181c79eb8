"""Post-training quantization: W8A8 vision tower (SmoothQuant) and W4A16 LLM (AWQ), in standard formats.

The quantized linears themselves, their arithmetic and their checkpoint config entries are layers the loader
uses too, so they live in `nvila.ops` (`quantized`, `int4`, `int8`). Here: `folding` (exact scale moves), `smooth`
(tower W8A8), `awq` (LLM W4A16), `calibration` (samples), `drift` (KL / perplexity), `job` (`nvila quantize` end
to end), `cli`.
Names are imported lazily, so building the `nvila` parser does not import torch. See docs/quantization.md.
"""

from __future__ import annotations

from nvila.lazy import lazy_exports

_EXPORTS = {
    "QuantizeSettings": "nvila.quant.job",
    "quantize": "nvila.quant.job",
    "AWQLinear": "nvila.ops.quantized",
    "W8A8Linear": "nvila.ops.quantized",
    "add_quantize_args": "nvila.quant.cli",
    "run_quantize": "nvila.quant.cli",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
