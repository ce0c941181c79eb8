"""`nvila convert`: its arguments and the function that runs one conversion.

Owns: `add_convert_args` and `run_convert` for the `nvila` command's table (which holds the help text).
Does not own the conversions (`to_hf`, `to_official`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nvila.argtypes import byte_size
from nvila.errors import NVILAError

log = logging.getLogger("nvila.convert")


def add_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, choices=("hf", "official"), help="the layout to write")
    p.add_argument("path", type=Path, metavar="PATH", help="the checkpoint folder to convert")
    p.add_argument("out", type=Path, metavar="OUT", help="the folder to write (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--max-shard-size",
        type=byte_size,
        default="5GB",
        metavar="SIZE",
        help="largest safetensors file, e.g. 5GB or 512MiB; more weights are sharded with an index (default: 5GB)",
    )
    p.add_argument(
        "--code-from",
        type=Path,
        metavar="DIR",
        help="with --to hf: copy the remote code (*.py, processor_config.json) from DIR, a downloaded -hf "
        "checkpoint of the same model type, instead of writing nvila's own (small modules that import the "
        "installed nvila, for transformers' and SGLang's trust_remote_code)",
    )


def run_convert(args: argparse.Namespace) -> int:
    """Convert PATH into OUT in the layout --to names."""
    if args.code_from is not None and args.to != "hf":
        raise NVILAError("--code-from only applies to --to hf")
    if args.to == "hf":
        from nvila.convert.to_hf import to_hf

        done = to_hf(
            args.path, args.out, overwrite=args.overwrite, max_shard_bytes=args.max_shard_size, code_from=args.code_from
        )
        for note in done.notes:
            log.warning("SGLang: %s", note)
    else:
        from nvila.convert.to_official import to_official

        done = to_official(args.path, args.out, overwrite=args.overwrite, max_shard_bytes=args.max_shard_size)
    size = f"{done.files} safetensors file(s), {done.nbytes:,} bytes"
    print(f"wrote {done.path}: {args.to} layout, {done.model_type}, {size}")
    return 0
