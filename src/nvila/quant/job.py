"""The quantization job: checkpoint in, quantized checkpoint out, with a drift and size report.

Steps: load the float model; draw calibration samples (search / held-out); record the float model's
next-token distributions on the held-out samples; quantize the vision tower (W8A8, SmoothQuant) and then the
LLM (W4A16, AWQ; its calibration inputs come through the already quantized tower); save in the official
layout with each part's "quantization_config"; load the result through the normal loader and measure its
drift; write `quantization.json`. The output folder appears only when all of this succeeded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nvila.assets import DEFAULT_MODEL
from nvila.atomic import atomic_folder
from nvila.checkpoint import PARTS, load_files, quantization_of, resolve_device, save
from nvila.errors import ConfigError
from nvila.loader import checkpoint_files, load, model_name
from nvila.quant.awq import awq_quantize, check_group_size
from nvila.quant.calibration import from_records, from_synth, model_inputs
from nvila.quant.drift import drift, next_token_logprobs
from nvila.quant.smooth import DEFAULT_ALPHA, w8a8_quantize

log = logging.getLogger(__name__)

VISION_SCHEMES = ("w8a8", "none")
LLM_SCHEMES = ("w4a16", "none")
REPORT = "quantization.json"


@dataclass
class QuantizeSettings:
    out: str
    model: str | None = None  #: default: the shipped model (`nvila.assets.DEFAULT_MODEL`)
    vision: str = "w8a8"
    llm: str = "w4a16"
    calib: str | None = None  #: records file; default: `nvila synth` samples drawn in memory
    group_size: int = 128
    calib_samples: int = 32  #: samples the scale searches run on
    heldout_samples: int = 16  #: samples the drift is measured on (never searched on)
    smooth_alpha: float | None = DEFAULT_ALPHA  #: SmoothQuant migration strength; None: no smoothing
    max_length: int = 4096  #: longer calibration records are skipped
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False

    def validate(self) -> None:
        if self.vision not in VISION_SCHEMES:
            raise ConfigError(f"unknown vision scheme {self.vision!r}; use one of {', '.join(VISION_SCHEMES)}")
        if self.llm not in LLM_SCHEMES:
            raise ConfigError(f"unknown LLM scheme {self.llm!r}; use one of {', '.join(LLM_SCHEMES)}")
        if self.vision == "none" and self.llm == "none":
            raise ConfigError("nothing to quantize: --vision and --llm are both 'none'")
        for name in ("group_size", "calib_samples", "heldout_samples", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.smooth_alpha is not None and not 0 <= self.smooth_alpha <= 1:
            raise ConfigError(f"--smooth-alpha must be in [0, 1] (or 'off'), got {self.smooth_alpha}")

    @property
    def source(self) -> Path:
        return Path(self.model) if self.model else DEFAULT_MODEL


def check_output(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse an existing output without `overwrite`, the source itself, or a non-checkpoint folder."""
    if not out.exists():
        return
    if source.exists() and out.resolve() == source.resolve():
        raise ConfigError(f"--out {out} is the model being quantized; write the quantized model elsewhere")
    if not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if any(out.iterdir()) and not ((out / "config.json").is_file() and (out / "llm").is_dir()):
        raise ConfigError(f"refusing to overwrite {out}: it is not empty and is not a checkpoint folder")


def weight_bytes(root: Path) -> dict[str, int]:
    """Bytes of the safetensors files of each part, and their total."""
    sizes = {part: sum(f.stat().st_size for f in (root / part).glob("*.safetensors")) for part in PARTS}
    return {**sizes, "total": sum(sizes.values())}


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_device(name)


def quantize(settings: QuantizeSettings) -> dict[str, Any]:
    """Run the job; returns the report also written to `<out>/quantization.json`."""
    settings.validate()
    source, out = settings.source, Path(settings.out)
    check_output(out, source, settings.overwrite)
    device = _device(settings.device)
    started = time.perf_counter()
    files = checkpoint_files(source)
    if quantization_of(files):
        raise ConfigError(f"{source} is already quantized; quantize its float checkpoint instead")
    model, processor = load_files(files, name=model_name(source), device=device, dtype=torch.float32)
    if settings.llm == "w4a16":
        check_group_size(model.llm, settings.group_size)
    if settings.calib:
        calib = from_records(settings.calib, processor, settings.calib_samples, settings.heldout_samples,
                             settings.max_length, settings.seed)  # fmt: skip
    else:
        calib = from_synth(processor, settings.calib_samples, settings.heldout_samples, settings.seed)
    search = [model_inputs(s, processor, device) for s in calib.search]
    heldout = [model_inputs(s, processor, device) for s in calib.heldout]
    reference = next_token_logprobs(model, heldout)

    report: dict[str, Any] = {"model": str(source), "settings": asdict(settings), "calibration": calib.describe()}
    if settings.vision == "w8a8":
        pixels = [b[key] for b in search for key in ("pixel_values", "video_pixel_values") if b[key] is not None]
        if not pixels:
            raise ConfigError("the calibration samples hold no images or videos, so the vision tower has no inputs")
        tower = model.vision_tower
        count = w8a8_quantize(tower, tower.model.encoder.layers, pixels, settings.smooth_alpha)
        report["vision_tower"] = {"scheme": "w8a8", "smooth_alpha": settings.smooth_alpha, "linears": count}
    if settings.llm == "w4a16":
        layers = awq_quantize(model, search, settings.group_size)
        report["llm"] = {"scheme": "w4a16", "method": "awq", "group_size": settings.group_size, "layers": layers}

    with atomic_folder(out) as tmp:
        save(model, processor.tokenizer, tmp, overwrite=True)
        del model
        quantized, _ = load(tmp, device=device, dtype=torch.float32)  # the normal loader, as users will
        report["drift"] = drift(reference, next_token_logprobs(quantized, heldout))
        before, after = weight_bytes(source), weight_bytes(tmp)
        report["sizes"] = {"before": before, "after": after, "ratio": after["total"] / before["total"]}
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["device"] = str(device)
        (tmp / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict[str, Any], out: str) -> str:
    """The lines `nvila quantize` prints."""
    mb = lambda n: f"{n / 2**20:.2f} MB"  # noqa: E731
    sizes, d = report["sizes"], report["drift"]
    parts = ", ".join(f"{p} {mb(sizes['before'][p])} -> {mb(sizes['after'][p])}" for p in PARTS)
    schemes = []
    if "vision_tower" in report:
        alpha = report["vision_tower"]["smooth_alpha"]
        schemes.append(f"vision tower W8A8 ({'no smoothing' if alpha is None else f'SmoothQuant alpha {alpha}'})")
    if "llm" in report:
        schemes.append(f"LLM W4A16 AWQ (group size {report['llm']['group_size']})")
    calib = report["calibration"]
    return "\n".join([
        f"quantized {report['model']} -> {out}: {', '.join(schemes)}",
        f"weights {mb(sizes['before']['total'])} -> {mb(sizes['after']['total'])} ({sizes['ratio']:.2f}x): {parts}",
        f"drift on {calib['heldout_samples']} held-out samples (not used by the search): KL {d['kl_mean']:.4f} "
        f"nats/token over {d['positions']} text positions (top-1 agreement {100 * d['top1_agreement']:.1f}%); "
        f"on the {d['answer_tokens']} answer tokens KL {d['answer_kl_mean']:.4f}, "
        f"perplexity {d['perplexity_before']:.3f} -> {d['perplexity_after']:.3f}",
        f"report: {Path(out) / REPORT}",
    ])  # fmt: skip
