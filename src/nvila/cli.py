"""The `nvila` command: one sub-command per job, each a plain function; this module only dispatches.

Exit codes: 0 success, 2 bad usage (argparse), 1 a failed job, reported as one line on stderr
(`--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from nvila import IMPORT_NOISE
from nvila.argtypes import MODEL_HELP, add_video_options, image_size, positive_int
from nvila.errors import NVILAError

log = logging.getLogger("nvila")


# ---- nvila tokens ---------------------------------------------------------------------------------------
def add_tokens_args(p: argparse.ArgumentParser) -> None:
    from nvila.models.nvila.configuration_nvila import PRESETS

    p.add_argument("--preset", required=True, help=f"model preset: {', '.join(PRESETS)}")
    p.add_argument("--image", type=image_size, metavar="WxH", help="image size in pixels, e.g. 1920x1080")
    p.add_argument("--video-frames", type=positive_int, metavar="N", help="number of sampled video frames")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_tokens(args: argparse.Namespace) -> int:
    """Visual-token budget of an image and/or a video from the preset's geometry (no model is built)."""
    from dataclasses import asdict

    from nvila.models.nvila.configuration_nvila import from_name
    from nvila.models.nvila.geometry import image_tokens, video_tokens

    if args.image is None and args.video_frames is None:
        raise NVILAError("give --image WxH and/or --video-frames N")
    cfg = from_name(args.preset)
    report: dict = {"preset": args.preset}
    lines = [f"preset {args.preset}: {cfg.image_aspect_ratio}, {cfg.downsample}x{cfg.downsample} projector"]
    if args.image is not None:
        t = image_tokens(*args.image, cfg)
        report.update(image=list(args.image), grid=list(t.grid), vit_tiles=t.vit_tiles, llm_tokens=t.llm_tokens)
        lines.append(
            f"image {args.image[0]}x{args.image[1]}: grid {t.grid[0]}x{t.grid[1]} tiles, "
            f"{t.vit_tiles} ViT tile passes, {t.llm_tokens} LLM visual tokens"
        )
    if args.video_frames is not None:
        v = video_tokens(args.video_frames, cfg)
        report["video"] = {**asdict(v), "pool_size": cfg.video_pool_size}
        lines.append(
            f"video of {v.frames} frames: {v.vit_tiles} ViT tile passes, {v.llm_tokens} LLM visual tokens after "
            f"{cfg.video_pool_size}x temporal pooling ({v.llm_tokens_unpooled} without)"
        )
    print(json.dumps(report) if args.json else "\n".join(lines))
    return 0


# ---- nvila generate -------------------------------------------------------------------------------------
def add_generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"{MODEL_HELP} (default: the shipped model)")
    p.add_argument("--image", action="append", default=[], metavar="FILE", help="an image; repeat for several")
    p.add_argument("--video", action="append", default=[], metavar="FILE", help="a video; repeat for several")
    p.add_argument("--frames", type=positive_int, metavar="N", help="frames sampled per video (default: the model's)")
    p.add_argument("--fps", type=float, metavar="F", help="sample videos at this rate, capped at --frames")
    add_video_options(p, timestamps_aliases=("--timestamps",))
    p.add_argument("--prompt", required=True, help="the question; put <image> where each image goes (default: first)")
    p.add_argument("--max-new-tokens", type=positive_int, default=128, metavar="N")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (with --temperature)")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="stop when this text appears; repeatable"
    )
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default: float32)")


def run_generate(args: argparse.Namespace) -> int:
    """Answer a prompt about images with a model."""
    from pathlib import Path

    from nvila.assets import DEFAULT_MODEL
    from nvila.image_io import load_image
    from nvila.prompt import user_turn

    images = [load_image(path) for path in args.image]  # fail on bad input before importing torch
    user_turn(args.prompt, len(images), len(args.video))
    if args.fps is not None and args.fps <= 0:
        raise NVILAError(f"--fps must be > 0, got {args.fps}")

    from nvila.generation import GenerationOptions
    from nvila.pipeline import NVILAPipeline

    options = GenerationOptions(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        stop=args.stop,
    )
    model_path = Path(args.model) if args.model else DEFAULT_MODEL
    pipe = NVILAPipeline.from_pretrained(model_path, device=args.device, dtype=args.dtype)
    pipe.processor.video_timestamps = args.video_timestamps
    videos = [_read_video(path, args, pipe.processor.config) for path in args.video]
    if args.stream:
        for piece in pipe.stream(args.prompt, images, options, videos=videos):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        print(pipe.generate(args.prompt, images, options, videos=videos))
    return 0


def _read_video(path: str, args: argparse.Namespace, cfg):
    """Sample a video's frames with --frames / --fps / --frame-sampling or the model's defaults, resized to the
    model's tile while decoding (what the processor would do next: identical pixels); notes go to the log."""
    from nvila.models.nvila.processing_nvila import video_frame_size
    from nvila.video_io import load_video

    num_frames, fps = args.frames or cfg.num_video_frames, args.fps if args.fps is not None else cfg.fps
    clip = load_video(path, num_frames, fps, sampling=args.frame_sampling, size=video_frame_size(cfg))
    for note in clip.notes:
        log.warning("%s: %s", path, note)
    return clip


# ---- nvila train ----------------------------------------------------------------------------------------
def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True, help="a YAML recipe (see recipes/)")
    p.add_argument("--resume", action="store_true", help="continue the run in the recipe's output_dir")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. max_steps=20 optim.lr=1e-4"
    )


def run_train(args: argparse.Namespace) -> int:
    """Train with a recipe; writes the model, resumable state, losses and TensorBoard logs to output_dir."""
    from nvila.train import load_recipe, run_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    metrics = run_recipe(recipe, resume=args.resume)
    if metrics and os.environ.get("RANK", "0") == "0":
        print(f"{recipe.name}: final loss {metrics['loss']:.4f}; model written to {recipe.output_dir}/model")
    return 0


SYNTH_HELP = (
    "write a deterministic synthetic dataset (documents, charts, shapes, events)\n\nexamples:\n"
    "  nvila synth --out data/synth\n"
    "  nvila synth --out data/tiny --tasks shapes=5000,documents=5000 --image-size 64 --seed 1\n"
    "  nvila synth --out data/video --tasks events=500 --video-size 64 --heldout events=50 --overwrite\n"
    "  nvila synth --out data/read-2 --tasks documents=3000 --image-size 192 --page-lines 2   # reading curriculum"
)


BENCH_HELP = (
    "side-by-side speed / token / memory comparison with Qwen2-VL, LLaVA-OneVision, InternVL\n\nexamples:\n"
    "  nvila bench --size small                                # writes docs/performance/small.md + plots\n"
    "  nvila bench --size full --cases images --repeats 5      # on a GPU: adds roofline fractions\n"
    "  nvila bench --from-json docs/performance/small.json     # re-render a saved run\n"
    "  nvila bench --size small --cases videos --frames 256 --merge docs/performance/small.json"
)


from nvila.eval.cli import EVAL_HELP  # noqa: E402  (help texts only: no torch)
from nvila.finetune.cli import HELP as FINETUNE_HELP  # noqa: E402
from nvila.prune.cli import HELP as PRUNE_HELP  # noqa: E402
from nvila.serve.cli import HELP as SERVE_HELP  # noqa: E402


# ---- dispatch ----
def lazy(module: str, name: str) -> Callable:
    """A function that imports `module` and calls its `name` only when it is called (keeps startup light)."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def packaged(name: str, module: str, help_text: str) -> Command:
    """A sub-command whose `add_<name>_args` / `run_<name>` live in `module` (imported when used)."""
    return name, help_text, lazy(module, f"add_{name}_args"), lazy(module, f"run_{name}")


COMMANDS: list[Command] = [
    (
        "generate",
        "answer a prompt about images and videos\n\nexamples:\n"
        "  nvila generate --image page.png --prompt 'What is the title?'\n"
        "  nvila generate --video clip.mp4 --frames 32 --prompt 'When does the red circle appear?'\n"
        "  nvila generate --model ckpt/ --image a.png --image b.png \\\n"
        "      --prompt '<image> vs <image>: what changed?' --stream",
        add_generate_args,
        run_generate,
    ),
    (
        "train",
        "train or fine-tune with a YAML recipe (one NVILA stage per recipe)\n\nexamples:\n"
        "  nvila train --recipe recipes/tiny/1_projector_init.yaml\n"
        "  nvila train --recipe recipes/tiny/1_projector_init.yaml --resume max_steps=200\n"
        "  torchrun --nproc-per-node 8 -m nvila.cli train --recipe recipes/nvila-8b/4_image_sft.yaml",
        add_train_args,
        run_train,
    ),
    ("bench", BENCH_HELP, lazy("nvila.bench.cli", "add_bench_args"), lazy("nvila.bench.cli", "run_bench")),
    packaged(
        "convert",
        "nvila.convert.cli",
        "convert a checkpoint between the official layout and the single-folder HF layout SGLang serves\n\n"
        "examples:\n"
        "  nvila convert --to hf ckpt/ ckpt-hf/\n"
        "  nvila convert --to hf ckpt/ ckpt-hf/ --code-from ~/hf/NVILA-Lite-2B-hf --max-shard-size 2GB\n"
        "  nvila convert --to official ckpt-hf/ ckpt/ --overwrite\n\n"
        "then, on a GPU machine with SGLang:\n"
        "  python -m sglang.launch_server --model-path ckpt-hf/ --trust-remote-code --port 30000\n"
        "see docs/checkpoints.md for the layout and what --code-from provides",
    ),
    ("eval", EVAL_HELP, lazy("nvila.eval.cli", "add_eval_args"), lazy("nvila.eval.cli", "run_eval")),
    (
        "finetune",
        FINETUNE_HELP,
        lazy("nvila.finetune.cli", "add_finetune_args"),
        lazy("nvila.finetune.cli", "run_finetune"),
    ),
    ("prune", PRUNE_HELP, lazy("nvila.prune.cli", "add_prune_args"), lazy("nvila.prune.cli", "run_prune")),
    packaged(
        "quantize",
        "nvila.quant.cli",
        "quantize a checkpoint: W8A8 vision tower (SmoothQuant), W4A16 LLM (AWQ); reports drift and sizes\n\n"
        "examples:\n"
        "  nvila quantize --out small-q/\n"
        "  nvila quantize --model ckpt/ --out ckpt-q/ --vision w8a8 --llm w4a16 --calib data/synth/train.jsonl\n"
        "  nvila quantize --model ckpt/ --out ckpt-q/ --vision none --group-size 64 --overwrite\n"
        "  nvila generate --model ckpt-q/ --image page.png --prompt 'What is the title?'\n"
        "see docs/quantization.md for the file format and measured drift",
    ),
    ("serve", SERVE_HELP, lazy("nvila.serve.cli", "add_serve_args"), lazy("nvila.serve.cli", "run_serve")),
    ("synth", SYNTH_HELP, lazy("nvila.synth.writer", "add_synth_args"), lazy("nvila.synth.writer", "run_synth")),
    (
        "tokens",
        "visual-token budget of an image or video from a preset's geometry\n\nexamples:\n"
        "  nvila tokens --preset nvila-8b --image 1920x1080\n"
        "  nvila tokens --preset nvila-lite-8b --image 1344x896 --json\n"
        "  nvila tokens --preset nvila-8b-video --video-frames 256",
        add_tokens_args,
        run_tokens,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvila", description="NVILA vision-language models: run, inspect, convert.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, add_args, run in COMMANDS:
        p = sub.add_parser(
            name,
            help=help_text.split("\n")[0],
            description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="nvila: %(levelname)s: %(message)s")
    if debug:  # what `import nvila` holds back (nvila.IMPORT_NOISE), shown for the libraries imported from here on
        for name in IMPORT_NOISE:
            logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        return args.run(args)
    except NVILAError as e:
        if debug:
            raise
        print(f"nvila {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nvila {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
