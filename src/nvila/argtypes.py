"""Argument types shared by every `nvila` sub-command (argparse `type=` callables; no torch)."""

from __future__ import annotations

import argparse
import re

from nvila.errors import ConfigError

#: What every `--model` flag takes (`nvila.load`).
MODEL_HELP = "a checkpoint folder (official or single-folder HF layout) or a hub id org/name"


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    return _whole_number(text, 0)


def positive_float(text: str) -> float:
    """A number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}")
    return int(match.group(1)), int(match.group(2))


#: Multipliers of the size suffixes `byte_size` reads (decimal and binary, as transformers' `max_shard_size`).
SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def byte_size(text: str) -> int:
    """'5GB' -> 5_000_000_000, '512MiB' -> 536_870_912, '1000' -> 1000 (bytes, >= 1)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 5GB, 512MiB or 1000000, got {text!r}")
    value = int(float(match.group(1)) * SIZE_UNITS[unit])
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


#: The uniform frame-sampling rules of `nvila.video_io.load_video` (its `SAMPLINGS`; defined here so that
#: parsing and checking options does not load PyAV).
FRAME_SAMPLINGS = ("centres", "linspace")


def check_frame_sampling(value: object, name: str) -> str:
    """`value` when it is one of `FRAME_SAMPLINGS`; else a `ConfigError` naming the option `name` and the choices."""
    if value not in FRAME_SAMPLINGS:
        raise ConfigError(f"{name} must be one of {', '.join(FRAME_SAMPLINGS)}; got {value!r}")
    return value


def add_video_options(p: argparse.ArgumentParser, *, scope: str = "", timestamps_aliases: tuple[str, ...] = ()) -> None:
    """`--frame-sampling` and `--video-timestamps`, the video prompt options of generate, serve and eval.

    They land in `args.frame_sampling` ("centres" | "linspace") and `args.video_timestamps` (bool). `scope`, when
    given, is appended to both help texts (e.g. how a request overrides the server's default).
    """
    extra = f"; {scope}" if scope else ""
    p.add_argument(
        "--frame-sampling",
        choices=FRAME_SAMPLINGS,
        default="centres",
        help="how a video's N frames are chosen when not sampled by --fps: 'centres' (default) takes the centre of N "
        "equal segments; 'linspace' the official NVILA loader's frames round(linspace(0, n-1, N)), first and last "
        f"included, to match numbers from the official code (see docs/video.md){extra}",
    )
    p.add_argument(
        "--video-timestamps",
        *timestamps_aliases,
        dest="video_timestamps",
        action="store_true",
        help="write each video's frame times into the prompt before the video ('The video frames were sampled at "
        "0.5s, 1.5s, ...'), as temporal-localization prompts do: use it for 'when does ...' questions such as "
        f"activitynet_rtl{extra}",
    )
