"""Media of a request: image URLs -> checked bytes -> decoded RGB images, under the server's permissions.

Owns: `data:` URIs (base64), local paths and file:// URLs (only inside --allow-local-media, symlinks
resolved first), refusing http(s) (this server fetches nothing), the per-image byte and pixel limits,
and the video hook. Does not own decoding itself (`nvila.image_io.load_image`).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image, UnidentifiedImageError

from nvila.errors import MediaError
from nvila.image_io import load_image
from nvila.serve.limits import ServeSettings
from nvila.serve.schema import ApiError

#: Message for video parts until the processor can place videos in a conversation.
VIDEO_UNSUPPORTED = "video input is not supported by this server yet"


def image_bytes(url: str, settings: ServeSettings) -> bytes:
    """The encoded bytes an image URL points to; raises `ApiError` (400/403/413) for what may not be read."""
    if url.startswith("data:"):
        return _data_uri_bytes(url, settings.max_image_bytes)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        raise ApiError(
            400,
            "remote image URLs are not supported: this server does not fetch URLs; send the image inline as a "
            "data: URI (data:image/png;base64,...)",
            "remote_media_refused",
        )
    if scheme == "file":
        return _local_bytes(unquote(urlsplit(url).path), settings)
    if scheme and len(scheme) > 1:  # one letter: a Windows drive, i.e. a plain path
        raise ApiError(400, f"unsupported image URL scheme {scheme!r}; use a data: URI", "invalid_image_url")
    return _local_bytes(url, settings)


def _data_uri_bytes(url: str, max_bytes: int) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ApiError(400, "image data URIs must be base64: data:image/png;base64,...", "invalid_image_url")
    if len(payload) * 3 // 4 > max_bytes:  # refuse before decoding
        raise ApiError(413, f"an image is larger than the limit of {max_bytes:,} bytes", "image_too_large")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "an image data URI is not valid base64", "invalid_image_url") from None


def _local_bytes(path_text: str, settings: ServeSettings) -> bytes:
    folder = settings.allow_local_media
    if folder is None:
        raise ApiError(
            400,
            "local image paths are not allowed; send the image as a data: URI, or start the server with "
            "--allow-local-media DIR",
            "local_media_refused",
        )
    # symlinks and '..' are resolved before the check, so a link inside DIR cannot point outside it
    resolved = Path(os.path.realpath(folder / Path(path_text).expanduser()))
    if not resolved.is_relative_to(folder):
        raise ApiError(403, "image path is outside the folder allowed by --allow-local-media", "local_media_refused")
    if not resolved.is_file():
        raise ApiError(400, f"image file not found: {path_text}", "invalid_image_url")
    size = resolved.stat().st_size
    if size > settings.max_image_bytes:
        raise ApiError(
            413, f"an image is larger than the limit of {settings.max_image_bytes:,} bytes", "image_too_large"
        )
    return resolved.read_bytes()


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


def load_request_video(url: str, settings: ServeSettings) -> None:
    """Hook for video parts: read with `nvila.video_io.load_video` once the processor places videos."""
    raise ApiError(400, VIDEO_UNSUPPORTED, "video_unsupported")
