"""`nvila quantize`: its arguments and the function that runs the job (`nvila.quant.job`).

Building the parser imports no torch; the scheme names are spelled out here (a test checks them against `job`).
"""

from __future__ import annotations

import argparse

from nvila.argtypes import MODEL_HELP, positive_int

VISION_SCHEMES = ("w8a8", "none")
LLM_SCHEMES = ("w4a16", "none")


def smooth_alpha(text: str) -> float | None:
    """'off' -> None, else a number in [0, 1]."""
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'off', got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (or 'off'), got {text}")
    return value


def add_quantize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"the float model: {MODEL_HELP} (default: the shipped model)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the quantized checkpoint")
    p.add_argument("--vision", choices=VISION_SCHEMES, default="w8a8", help="vision tower scheme (default: w8a8)")
    p.add_argument("--llm", choices=LLM_SCHEMES, default="w4a16", help="LLM scheme (default: w4a16)")
    p.add_argument("--calib", metavar="FILE", help="calibration records (.jsonl / .json, e.g. from nvila synth); "
                   "default: synthetic documents, charts and shapes drawn in memory")  # fmt: skip
    p.add_argument("--group-size", type=positive_int, default=128, metavar="N", help="int4 group size (default: 128)")
    p.add_argument(
        "--calib-samples", type=positive_int, default=32, metavar="N", help="samples searched on (default: 32)"
    )
    p.add_argument("--heldout-samples", type=positive_int, default=16, metavar="N",
                   help="further samples the drift is measured on (default: 16)")  # fmt: skip
    p.add_argument("--smooth-alpha", type=smooth_alpha, default=0.5, metavar="A",
                   help="SmoothQuant strength for the W8A8 tower, in [0, 1], or 'off' (default: 0.5)")  # fmt: skip
    p.add_argument("--max-length", type=positive_int, default=4096, metavar="N", help="skip longer calibration records")
    p.add_argument("--seed", type=int, default=0, help="calibration sampling seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing quantized checkpoint at --out")


def run_quantize(args: argparse.Namespace) -> int:
    """Quantize, save, measure drift and sizes; prints a summary (details in DIR/quantization.json)."""
    from nvila.quant.job import QuantizeSettings, quantize, summary

    settings = QuantizeSettings(
        out=args.out, model=args.model, vision=args.vision, llm=args.llm, calib=args.calib,
        group_size=args.group_size, calib_samples=args.calib_samples, heldout_samples=args.heldout_samples,
        smooth_alpha=args.smooth_alpha, max_length=args.max_length, seed=args.seed, device=args.device,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(summary(quantize(settings), args.out))
    return 0
