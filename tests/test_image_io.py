"""Image reading: every input kind and mode becomes correct RGB; bad files raise MediaError."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from nvila.errors import MediaError
from nvila.image_io import load_image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data): enough to look like a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def pixel(image: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def test_path_pil_and_array_inputs_agree(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    for source in (path, str(path), path.read_bytes(), Image.fromarray(array), array):
        out = load_image(source)
        assert out.size == (30, 20)
        assert np.array_equal(np.asarray(out), array)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    r, g, b = pixel(out, (10, 2))  # the red strip is now at the top
    assert r > 200 and g < 60 and b < 60


def test_grayscale_and_bilevel():
    assert pixel(load_image(Image.new("L", (4, 4), 77))) == (77, 77, 77)
    assert pixel(load_image(Image.new("1", (4, 4), 1))) == (255, 255, 255)


def test_alpha_is_composited_on_white():
    transparent_black = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert pixel(load_image(transparent_black)) == (255, 255, 255)
    half_red = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    assert pixel(load_image(half_red)) == (255, 127, 127)
    assert pixel(load_image(Image.new("LA", (4, 4), (0, 255)))) == (0, 0, 0)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.info["transparency"] = 1
    path = tmp_path / "p.png"
    image.save(path, transparency=1)
    assert pixel(load_image(path)) == (255, 255, 255)  # palette entry 1 is fully transparent
    assert pixel(load_image(Image.new("P", (2, 2), 0))) == (0, 0, 0)


def test_cmyk(tmp_path):
    path = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=100)  # pure red in CMYK
    r, g, b = pixel(load_image(path))
    assert r > 240 and g < 15 and b < 15


def test_sixteen_bit_png(tmp_path):
    array = np.full((6, 6), 65535 // 2, dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(array).save(path)
    assert pixel(load_image(path)) == (127, 127, 127)  # not clipped to 255
    assert pixel(load_image(np.full((3, 3, 3), 65535, dtype=np.uint16))) == (255, 255, 255)


def test_float_and_bool_arrays():
    assert pixel(load_image(np.full((2, 2), 0.5))) == (128, 128, 128)
    assert pixel(load_image(np.ones((2, 2), dtype=bool))) == (255, 255, 255)
    assert pixel(load_image(np.zeros((2, 2, 4), dtype=np.uint8))) == (255, 255, 255)  # fully transparent


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((4,), np.uint8), np.full((2, 2), 2.0), np.full((2, 2), -1, np.int32)],
)
def test_bad_arrays(array):
    with pytest.raises(MediaError):
        load_image(array)


def test_bad_files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    cases = {
        "missing.png": None,
        "empty.png": b"",
        "text.png": b"this is not an image at all\n" * 10,
        "truncated.png": good.read_bytes()[: len(good.read_bytes()) // 2],
        "corrupt.png": good.read_bytes()[:100] + b"\x00" * 200 + good.read_bytes()[300:],
        "bomb.png": png_header_only(50000, 50000),
        "thin.png": None,
    }
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    Image.new("RGB", (1, 10000)).save(tmp_path / "thin.png")
    messages = {}
    for name in cases:
        with pytest.raises(MediaError) as info:
            load_image(tmp_path / name)
        messages[name] = str(info.value)
    assert "not found" in messages["missing.png"]
    assert "empty" in messages["empty.png"]
    assert "not an image" in messages["text.png"]
    assert "pixels" in messages["bomb.png"]
    assert "aspect ratio" in messages["thin.png"]
    assert all("\n" not in m for m in messages.values())


def test_unsupported_type():
    with pytest.raises(MediaError):
        load_image(12345)


def test_truncated_files_fail_even_when_other_code_lets_pillow_accept_them(tmp_path, monkeypatch):
    from PIL import ImageFile

    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = good.read_bytes()[: len(good.read_bytes()) // 2]
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what importing lmms-eval does
    with pytest.raises(MediaError, match="truncated"):
        load_image(truncated)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored
