"""Reading images safely into 8-bit RGB.

Owns: opening paths / bytes / PIL images / numpy arrays, refusing what cannot or should not be decoded
(empty, corrupt, truncated, decompression bombs, absurd shapes) with a `MediaError`, and converting every
mode (EXIF rotation, grayscale, alpha, palette, CMYK, 16-bit, float) to correct RGB.
Does not own resizing or tiling (`image_processing`).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from nvila.errors import MediaError
from nvila.models.nvila.geometry import check_image_size

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray

#: Background that transparent pixels are composited onto.
ALPHA_BACKGROUND = (255, 255, 255)


def load_image(source: ImageInput) -> Image.Image:
    """Any supported image input -> a decoded RGB `PIL.Image` (EXIF orientation applied)."""
    if isinstance(source, Image.Image):
        check_image_size(*source.size)
        return to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    if isinstance(source, (bytes, bytearray)):
        return _decode(io.BytesIO(source), "<bytes>")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise MediaError(f"image file not found: {path}")
        if path.stat().st_size == 0:
            raise MediaError(f"image file is empty (0 bytes): {path}")
        with path.open("rb") as f:
            return _decode(f, str(path))
    raise MediaError(f"unsupported image input of type {type(source).__name__}; give a path, bytes, PIL image or array")


_PILLOW_SWITCHES = threading.Lock()


@contextlib.contextmanager
def _strict_pillow():
    """Bombs are errors and truncated files fail, whatever other code set: Pillow's switches are process-wide
    (lmms-eval, for one, turns `LOAD_TRUNCATED_IMAGES` on when imported), so they are held under a lock."""
    with _PILLOW_SWITCHES, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _decode(stream: io.IOBase, name: str) -> Image.Image:
    try:
        with _strict_pillow():
            image = Image.open(stream)
            check_image_size(*image.size)  # header only: refuse bombs before decoding pixels
            image.load()
    except MediaError as e:
        raise MediaError(f"{name}: {e}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaError(f"{name}: refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise MediaError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise MediaError(f"{name}: corrupt or truncated image ({e})") from None
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16/32-bit and float values are rescaled, alpha is composited."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        return array_to_rgb(np.asarray(image).astype(np.uint16))
    if mode == "I":  # 32-bit ints: 16-bit data when values exceed 255, else 8-bit data
        return array_to_rgb(np.asarray(image), sixteen_bit=False)
    if mode == "F":  # floats: [0, 1] data is scaled to 255, anything else is clipped to [0, 255]
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        values = values * 255 if values.max() <= 1.0 else values
        return array_to_rgb(np.round(np.clip(values, 0, 255)).astype(np.uint8))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "1":
        image = image.convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV


def array_to_rgb(array: np.ndarray, sixteen_bit: bool = True) -> Image.Image:
    """[h, w], [h, w, 1], [h, w, 3] or [h, w, 4] array -> RGB image.

    uint8 is taken as is; other integers are 16-bit data scaled by 1/257 (with `sixteen_bit` False, only
    when some value exceeds 255); floats must lie in [0, 1]; bool is black/white. Four channels are RGBA.
    """
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise MediaError(f"image array must be [h, w], [h, w, 1], [h, w, 3] or [h, w, 4]; got shape {array.shape}")
    check_image_size(array.shape[1], array.shape[0])
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise MediaError("float image arrays must hold finite values in [0, 1]")
        array = np.round(array * 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 65535:
            raise MediaError(f"integer image values must lie in [0, 65535]; got [{array.min()}, {array.max()}]")
        scale = 257 if (sixteen_bit or array.max() > 255) else 1
        array = np.round(array.astype(np.float64) / scale).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise MediaError(f"unsupported image array dtype {array.dtype}")
    array = np.ascontiguousarray(array)
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.shape[-1] == 4:
        return to_rgb(Image.fromarray(array, "RGBA"))
    return Image.fromarray(array, "RGB")
