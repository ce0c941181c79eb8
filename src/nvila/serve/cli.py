"""`nvila serve`: its arguments and the function that loads a checkpoint and runs the HTTP server.

Owns: `add_serve_args`, `run_serve` and `HELP` (the sub-command's description with examples), for the
`nvila` command's table. Does not own the app (`nvila.serve.app`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from nvila.argtypes import MODEL_HELP, add_video_options, non_negative_int, positive_float, positive_int

log = logging.getLogger("nvila.serve")

HELP = (
    "serve a model over an OpenAI-compatible HTTP API, with a web demo at /\n\nexamples:\n"
    "  nvila serve                                    # the shipped model on http://127.0.0.1:8000\n"
    "  nvila serve --model ckpt/ --device cuda --dtype bfloat16 --port 8080\n"
    "  NVILA_API_KEY=secret nvila serve --host 0.0.0.0 --max-concurrent 16 --timeout 120\n"
    "  nvila serve --model ckpt/ --device cuda --max-batch 32 --max-len 8192 --compile\n"
    "  nvila serve --allow-local-media ./images       # requests may name files inside ./images\n"
    "  nvila serve --model ckpt/ --frame-sampling linspace --video-timestamps   # temporal localization\n\n"
    "then:\n"
    "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
    '      -d \'{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32}\'\n'
    "see docs/serving.md for images, videos, streaming, limits and metrics"
)


def add_serve_args(p: argparse.ArgumentParser) -> None:
    from nvila.serve.limits import MiB, ServeSettings

    d = ServeSettings()
    p.add_argument("--model", help=f"{MODEL_HELP} (default: the shipped model)")
    p.add_argument("--model-name", help="model id clients use in requests (default: the checkpoint folder's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default: float32)")
    p.add_argument(
        "--api-key", help="require 'Authorization: Bearer KEY' on /v1/* (default: $NVILA_API_KEY, else no key)"
    )
    p.add_argument(
        "--allow-local-media",
        type=Path,
        metavar="DIR",
        help="let requests name image / video files (paths, file:// URLs) that resolve inside DIR (default: refused)",
    )
    p.add_argument(
        "--max-concurrent",
        type=positive_int,
        default=d.max_concurrent,
        metavar="N",
        help=f"requests queued or generating at once; more get 429 (default: {d.max_concurrent})",
    )
    p.add_argument(
        "--max-tokens-cap",
        type=positive_int,
        default=d.max_tokens_cap,
        metavar="N",
        help=f"largest max_tokens a request may ask for (default: {d.max_tokens_cap})",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=d.timeout_s,
        metavar="SECONDS",
        help=f"per request, queueing included; then 504 (default: {d.timeout_s:g})",
    )
    p.add_argument(
        "--max-request-bytes",
        type=positive_int,
        default=d.max_request_bytes,
        metavar="N",
        help=f"request body limit, inline images included; more get 413 (default: {d.max_request_bytes // MiB} MiB)",
    )
    p.add_argument(
        "--max-images",
        type=positive_int,
        default=d.max_images,
        metavar="N",
        help=f"images per request (default: {d.max_images})",
    )
    p.add_argument(
        "--max-frames",
        type=positive_int,
        default=d.max_frames,
        metavar="N",
        help="video frames per request over all videos; each video is sampled at the model's frame count, at "
        f"most N (default: {d.max_frames})",
    )
    p.add_argument(
        "--max-batch",
        type=positive_int,
        default=d.engine.max_batch,
        metavar="N",
        help=f"KV cache slots: requests decoded together; more wait for a free slot (default: {d.engine.max_batch})",
    )
    p.add_argument(
        "--max-len",
        type=positive_int,
        metavar="N",
        help="tokens per slot, prompt + answer; the KV cache holds max-batch x N (default: the model's context)",
    )
    p.add_argument(
        "--vision-cache-mib",
        type=non_negative_int,
        default=d.engine.vision_cache_bytes // MiB,
        metavar="N",
        help="MiB of visual embeddings kept so repeated images are not re-encoded; 0 turns it off "
        f"(default: {d.engine.vision_cache_bytes // MiB})",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the decode step (CUDA only)")
    add_video_options(
        p, scope='the server\'s default: a request may set "frame_sampling" / "video_timestamps" in its body'
    )


def run_serve(args: argparse.Namespace) -> int:
    """Load a checkpoint and serve it until interrupted."""
    import uvicorn

    from nvila.assets import DEFAULT_MODEL
    from nvila.engine.config import EngineConfig
    from nvila.pipeline import NVILAPipeline
    from nvila.serve.app import create_app
    from nvila.serve.limits import MiB, ServeSettings

    model_path = Path(args.model) if args.model else DEFAULT_MODEL
    settings = ServeSettings(  # checked before the model loads
        model_name=args.model_name or model_path.resolve().name,
        api_key=args.api_key or os.environ.get("NVILA_API_KEY") or None,
        allow_local_media=args.allow_local_media,
        max_concurrent=args.max_concurrent,
        max_tokens_cap=args.max_tokens_cap,
        timeout_s=args.timeout,
        max_request_bytes=args.max_request_bytes,
        max_images=args.max_images,
        max_frames=args.max_frames,
        video_timestamps=args.video_timestamps,
        frame_sampling=args.frame_sampling,
        engine=EngineConfig(
            max_batch=args.max_batch,
            max_len=args.max_len,
            vision_cache_bytes=args.vision_cache_mib * MiB,
            compile=args.compile,
        ),
    )
    if settings.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s without an API key: anyone who can reach this port can use the model", args.host)
    pipeline = NVILAPipeline.from_pretrained(model_path, device=args.device, dtype=args.dtype)
    app = create_app(pipeline, settings)
    log.info("serving %s on http://%s:%d (web demo at /)", settings.model_name, args.host, args.port)
    # uvicorn logs its address and each request; on Ctrl-C, open streams get 10 s to finish
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=10)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `nvila serve` on its own (until it is wired into the `nvila` command)."""
    parser = argparse.ArgumentParser(
        prog="nvila serve", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_serve_args(parser)
    logging.basicConfig(level=logging.INFO, format="nvila: %(levelname)s: %(message)s")
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
