"""Media of a request: image and video URLs -> checked bytes or files -> decoded images and sampled frames.

Owns: `data:` URIs (base64), local paths and file:// URLs (only inside --allow-local-media, symlinks
resolved first), refusing http(s) (this server fetches nothing), the per-item byte limits, the per-image and
per-frame pixel limits (read from headers before decoding), and the number of frames a request's videos get.
Does not own decoding itself (`nvila.image_io.load_image`, `nvila.video_io.load_video`).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import av
from PIL import Image, UnidentifiedImageError

from nvila.errors import MediaError
from nvila.image_io import load_image
from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.processing_nvila import video_frame_size
from nvila.serve.limits import ServeSettings
from nvila.serve.schema import ApiError
from nvila.video_io import VideoFrames, load_video


@dataclass(frozen=True)
class MediaKind:
    """How errors name one kind of media: "image" or "video", and an inline example of it."""

    name: str
    example: str


IMAGE = MediaKind("image", "data:image/png;base64,...")
VIDEO = MediaKind("video", "data:video/mp4;base64,...")


def media_source(url: str, settings: ServeSettings, kind: MediaKind, max_bytes: int) -> bytes | Path:
    """The bytes of a data: URI, or the checked local file a path names; raises `ApiError` (400/403/413) for what
    may not be read."""
    if url.startswith("data:"):
        return _data_uri_bytes(url, kind, max_bytes)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        raise ApiError(
            400,
            f"remote {kind.name} URLs are not supported: this server does not fetch URLs; send the {kind.name} "
            f"inline as a data: URI ({kind.example})",
            "remote_media_refused",
        )
    if scheme == "file":
        return _local_file(unquote(urlsplit(url).path), settings, kind, max_bytes)
    if scheme and len(scheme) > 1:  # one letter: a Windows drive, i.e. a plain path
        raise ApiError(
            400, f"unsupported {kind.name} URL scheme {scheme!r}; use a data: URI", f"invalid_{kind.name}_url"
        )
    return _local_file(url, settings, kind, max_bytes)


def _too_large(kind: MediaKind, max_bytes: int) -> ApiError:
    return ApiError(413, f"a {kind.name} is larger than the limit of {max_bytes:,} bytes", f"{kind.name}_too_large")


def _data_uri_bytes(url: str, kind: MediaKind, max_bytes: int) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ApiError(400, f"{kind.name} data URIs must be base64: {kind.example}", f"invalid_{kind.name}_url")
    if len(payload) * 3 // 4 > max_bytes:  # refuse before decoding
        raise _too_large(kind, max_bytes)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"a {kind.name} data URI is not valid base64", f"invalid_{kind.name}_url") from None


def _local_file(path_text: str, settings: ServeSettings, kind: MediaKind, max_bytes: int) -> Path:
    folder = settings.allow_local_media
    if folder is None:
        raise ApiError(
            400,
            f"local {kind.name} paths are not allowed; send the {kind.name} as a data: URI, or start the server "
            "with --allow-local-media DIR",
            "local_media_refused",
        )
    # symlinks and '..' are resolved before the check, so a link inside DIR cannot point outside it
    resolved = Path(os.path.realpath(folder / Path(path_text).expanduser()))
    if not resolved.is_relative_to(folder):
        raise ApiError(
            403, f"{kind.name} path is outside the folder allowed by --allow-local-media", "local_media_refused"
        )
    if not resolved.is_file():
        raise ApiError(400, f"{kind.name} file not found: {path_text}", f"invalid_{kind.name}_url")
    if resolved.stat().st_size > max_bytes:
        raise _too_large(kind, max_bytes)
    return resolved


# ---- images ---------------------------------------------------------------------------------------------
def image_bytes(url: str, settings: ServeSettings) -> bytes:
    """The encoded bytes an image URL points to; raises `ApiError` (400/403/413) for what may not be read."""
    source = media_source(url, settings, IMAGE, settings.max_image_bytes)
    return source.read_bytes() if isinstance(source, Path) else source


def decode_image(data: bytes, settings: ServeSettings, index: int) -> Image.Image:
    """Encoded image -> RGB image; the pixel limit is checked from the header before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError:
        raise ApiError(
            400, f"image {index + 1} is refused as a possible decompression bomb", "image_too_large"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(
            400, f"image {index + 1} is not an image (or a format Pillow cannot read)", "invalid_image"
        ) from None
    if width * height > settings.max_image_pixels:
        raise ApiError(
            400,
            f"image {index + 1} is {width}x{height} = {width * height:,} pixels, above this server's limit of "
            f"{settings.max_image_pixels:,}; downscale it first",
            "image_too_large",
        )
    try:
        return load_image(data)
    except MediaError as e:
        raise ApiError(400, f"image {index + 1}: {e}", "invalid_image") from None


def load_request_image(url: str, settings: ServeSettings, index: int) -> Image.Image:
    """Read and decode the `index`-th image of a request (blocking: run it in a worker thread)."""
    return decode_image(image_bytes(url, settings), settings, index)


# ---- videos ---------------------------------------------------------------------------------------------
def frames_per_video(n_videos: int, cfg: NVILAConfig, settings: ServeSettings) -> int:
    """Frames each of a request's `n_videos` videos is sampled at: the model's `num_video_frames`, at most
    `settings.max_frames`; 400 when the videos together would need more than `max_frames`."""
    frames = min(cfg.num_video_frames, settings.max_frames)
    if n_videos * frames > settings.max_frames:
        raise ApiError(
            400,
            f"{n_videos} videos of {frames} frames each are {n_videos * frames} frames, above this server's limit of "
            f"{settings.max_frames} per request (--max-frames)",
            "too_many_frames",
        )
    return frames


def load_request_video(
    url: str, settings: ServeSettings, index: int, num_frames: int, cfg: NVILAConfig, sampling: str
) -> VideoFrames:
    """Read the `index`-th video of a request and sample `num_frames` frames at the model's fps with `sampling`
    ("centres" or "linspace": the request's, else the server's), each resized to one tile while decoding
    (blocking: run it in a worker thread). Inline videos pass through a temporary file (PyAV reads files), which
    is removed at once."""
    source = media_source(url, settings, VIDEO, settings.max_video_bytes)
    if isinstance(source, Path):
        return _decode_video(source, settings, index, num_frames, cfg, sampling)
    if not source:
        raise ApiError(400, f"video {index + 1} is empty (0 bytes)", "invalid_video")
    with tempfile.NamedTemporaryFile(prefix="nvila-video-") as file:
        file.write(source)
        file.flush()
        return _decode_video(Path(file.name), settings, index, num_frames, cfg, sampling)


def _decode_video(
    path: Path, settings: ServeSettings, index: int, num_frames: int, cfg: NVILAConfig, sampling: str
) -> VideoFrames:
    size = _frame_size(path)
    if size is not None and size[0] * size[1] > settings.max_frame_pixels:
        raise ApiError(
            400,
            f"video {index + 1} is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels per frame, above this server's "
            f"limit of {settings.max_frame_pixels:,}; downscale it first",
            "video_too_large",
        )
    try:
        return load_video(path, num_frames, cfg.fps, sampling=sampling, size=video_frame_size(cfg))
    except MediaError as e:  # its messages name the file: say "the video" instead of a server path
        reason = str(e).replace(f"{path}: ", "").replace(str(path), "the video")
        raise ApiError(400, f"video {index + 1}: {reason}", "invalid_video") from None


def _frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the first video stream, from the container's headers; None when there is none (then
    `load_video` says what is wrong)."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            context = streams[0].codec_context if streams else None
            return (context.width, context.height) if context is not None else None
    except av.error.FFmpegError:
        return None
