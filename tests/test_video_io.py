"""Video frame sampling: which frames and times come back, rotation, and every bad input as a `MediaError`.

Videos are written by the tests with PyAV: 64x48, each frame one flat colour that encodes its index (coarse
colour levels, so compression noise cannot move it to a neighbour), libx264 with B-frames and short
keyframe intervals so that seeking and frame reordering are exercised.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import nvila.video_io as video_io
from nvila.errors import MediaError
from nvila.video_io import MAX_VIDEO_SIDE, RESAMPLE, VideoFrames, load_video

W, H = 64, 48
RATE = 25
CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def colour(index: int) -> tuple[int, int, int]:
    """Index 0..1023 as 16 red x 16 green x 4 blue levels."""
    return 16 * (index % 16) + 8, 16 * (index // 16 % 16) + 8, 64 * (index // 256) + 32


def frame_index(image: Image.Image) -> int:
    """The index `colour` encoded, read back from the frame's mean colour."""
    r, g, b = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return round((b - 32) / 64) * 256 + round((g - 8) / 16) * 16 + round((r - 8) / 16)


def write_video(
    path: Path,
    num_frames: int,
    *,
    pts_ms: list[int] | None = None,
    keyint: int = 10,
    rotation: tuple[int, bool] | None = None,
    marker: bool = False,
    textured: bool = False,
    size: tuple[int, int] = (W, H),
    fmt: str | None = None,
) -> Path:
    """`num_frames` frames of `size` at RATE fps (or at `pts_ms` milliseconds), frame i coloured `colour(i)`.

    `marker` paints the top-left quadrant white on black instead, `textured` random pixels (seeded by the
    index); `rotation` = (degrees ccw, hflip) is written as the stream's display matrix.
    """
    width, height = size
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(CODEC, rate=RATE)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"g": str(keyint)}
    if pts_ms is not None:
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
    if rotation is not None:
        stream.set_display_rotation(rotation[0], hflip=rotation[1])
    for i in range(num_frames):
        pixels = np.zeros((height, width, 3), np.uint8)
        if marker:
            pixels[: height // 2, : width // 2] = 255
        elif textured:
            pixels[:] = np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)
        else:
            pixels[:] = colour(i)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        if pts_ms is not None:
            frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
        else:
            frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "mp4": write_video(root / "v.mp4", 100),  # 4 s, keyframe every 10 frames
        "mkv": write_video(root / "v.mkv", 100, fmt="matroska"),  # no stream duration, lazy keyframe index
        "ts": write_video(root / "v.ts", 300, keyint=25, fmt="mpegts"),  # no index: seeks land anywhere
        "long": write_video(root / "long.mp4", 400, keyint=25),  # 16 s
        "short": write_video(root / "short.mp4", 5),
    }


def indices(result: VideoFrames) -> list[int]:
    return [frame_index(image) for image in result.frames]


# -- which frames -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["auto", "seek", "sequential"])
@pytest.mark.parametrize(("kind", "length"), [("mp4", 100), ("mkv", 100), ("ts", 300)])
def test_uniform_sampling_takes_the_frame_shown_at_each_segment_centre(videos, kind, length, strategy):
    result = load_video(videos[kind], 8, strategy=strategy)
    # n frames of 1/25 s, 8 segments of n / 200 s: centres at (i + 1/2) * n / 200 s -> frame floor(t * 25)
    expected = [math.floor((i + 0.5) * length / 8) for i in range(8)]
    assert indices(result) == expected
    assert result.timestamps == pytest.approx([i / RATE for i in expected], abs=1e-9)
    assert result.duration == pytest.approx(length / RATE)
    assert result.source_fps == pytest.approx(RATE)
    assert result.requested == 8 and result.notes == []
    assert all(image.mode == "RGB" and image.size == (W, H) for image in result.frames)


@pytest.mark.parametrize("num_frames", [1, 3, 7, 32, 100])
def test_uniform_sampling_matches_the_index_formula_for_any_count(videos, num_frames):
    result = load_video(videos["mp4"], num_frames)
    # constant rate, n frames: frame floor((i + 1/2) * n / N), exact (rational arithmetic, ties included)
    expected = [(2 * i + 1) * 100 // (2 * num_frames) for i in range(num_frames)]
    assert indices(result) == expected
    assert result.timestamps == pytest.approx([i / RATE for i in expected], abs=1e-9)


@pytest.mark.parametrize("strategy", ["auto", "sequential"])
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # round(linspace(0, 99, 8)): 0, 14.14, 28.29, 42.43, 56.57, 70.71, 84.86, 99
        ("mp4", [0, 14, 28, 42, 57, 71, 85, 99]),
        ("mkv", [0, 14, 28, 42, 57, 71, 85, 99]),
        # round(linspace(0, 299, 8)): 0, 42.71, 85.43, 128.14, 170.86, 213.57, 256.29, 299
        ("ts", [0, 43, 85, 128, 171, 214, 256, 299]),
    ],
)
def test_linspace_sampling_takes_the_official_frame_indices(videos, kind, expected, strategy):
    result = load_video(videos[kind], 8, sampling="linspace", strategy=strategy)
    assert indices(result) == expected
    assert result.timestamps == pytest.approx([i / RATE for i in expected], abs=1e-9)
    assert result.notes == []


@pytest.mark.parametrize(
    ("num_frames", "expected"),
    [
        (1, [0]),
        (2, [0, 99]),
        (3, [0, 50, 99]),  # 49.5 -> 50
        (12, [0, 9, 18, 27, 36, 45, 54, 63, 72, 81, 90, 99]),
    ],
)
def test_linspace_indices_for_any_count(videos, num_frames, expected):
    assert indices(load_video(videos["mp4"], num_frames, sampling="linspace")) == expected


def test_linspace_repeats_frames_of_a_short_video_as_the_official_loader_does(videos):
    # 5 frames, 9 wanted: linspace(0, 4, 9) = 0, 0.5, 1, ..., 4; numpy rounds halves to even: 0 0 1 2 2 2 3 4 4
    result = load_video(videos["short"], 9, sampling="linspace")
    assert indices(result) == [0, 0, 1, 2, 2, 2, 3, 4, 4]
    assert result.timestamps == pytest.approx([0.0, 0.0, 0.04, 0.08, 0.08, 0.08, 0.12, 0.16, 0.16])
    assert result.frames[0] is result.frames[1]  # a repeat is the same image, not another copy
    assert result.notes == ["video has 5 frames, 9 requested: used 5 distinct, repeated to 9"]


def test_linspace_applies_to_capped_fps_sampling(videos):
    result = load_video(videos["mp4"], 5, fps=10.0, sampling="linspace")  # 40 periods > 5: 5 uniform frames
    assert indices(result) == [0, 25, 50, 74, 99]  # round(linspace(0, 99, 5)): 0, 24.75, 49.5, 74.25, 99
    assert any("capped at 5" in note for note in result.notes)


def test_frames_resized_while_decoding_equal_frames_resized_afterwards(tmp_path):
    path = write_video(tmp_path / "big.mp4", 12, textured=True, size=(320, 176))
    full = load_video(path, 6)
    small = load_video(path, 6, size=(48, 40))
    assert small.timestamps == full.timestamps
    for early, late in zip(small.frames, full.frames):
        assert early.size == (48, 40)
        assert early.tobytes() == late.resize((48, 40), RESAMPLE).tobytes()  # identical pixels


def test_resizing_while_decoding_bounds_the_memory_of_the_returned_frames(tmp_path):
    path = write_video(tmp_path / "big.mp4", 40, textured=True, size=(640, 352))
    result = load_video(path, 32, size=(64, 64))
    assert len(result.frames) == 32
    assert sum(len(image.tobytes()) for image in result.frames) == 32 * 64 * 64 * 3  # full size: 32 * 640 * 352 * 3
    assert len({id(image) for image in result.frames}) == 32


def test_resize_while_decoding_applies_after_rotation(tmp_path):
    path = write_video(tmp_path / "rot.mp4", 10, marker=True, rotation=(90, False))  # shown 48 wide, 64 high
    result = load_video(path, 2, size=(24, 32))
    assert [image.size for image in result.frames] == [(24, 32), (24, 32)]
    assert [white_quadrant(image) for image in result.frames] == ["bottom-left", "bottom-left"]


def test_fps_sampling_takes_one_frame_per_period_at_its_centre(videos):
    result = load_video(videos["mp4"], 32, fps=2.0)
    # 4 s at 2 fps: 8 times 0.25, 0.75, ..., 3.75 s (fewer than the cap of 32)
    assert indices(result) == [6, 18, 31, 43, 56, 68, 81, 93]
    assert result.timestamps == pytest.approx([0.24, 0.72, 1.24, 1.72, 2.24, 2.72, 3.24, 3.72])
    assert result.notes == []


def test_fps_sampling_is_capped_at_num_frames_spread_over_the_whole_video(videos):
    result = load_video(videos["mp4"], 5, fps=10.0)  # 40 frames at 10 fps > 5: 5 uniform times instead
    assert indices(result) == [10, 30, 50, 70, 90]
    assert any("capped at 5" in note for note in result.notes)


def test_fps_below_one_frame_per_video_takes_the_middle(videos):
    # one period (10 s) is longer than the 4 s video; numpy scalars are accepted as numbers
    result = load_video(videos["mp4"], np.int64(8), fps=np.float32(0.1))
    assert indices(result) == [50]
    assert result.timestamps == pytest.approx([2.0])


def test_video_shorter_than_the_request_returns_every_frame_once(videos):
    result = load_video(videos["short"], 8)
    assert indices(result) == [0, 1, 2, 3, 4]
    assert result.timestamps == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    assert result.requested == 8
    assert result.notes == ["video has 5 frames, 8 requested: used 5"]


@pytest.mark.parametrize("fmt", [None, "matroska"])
def test_variable_frame_rate_uses_presentation_times_not_indices(tmp_path, fmt):
    pts_ms = [0, 30, 60, 90, 400, 410, 900, 1300, 1800, 1810, 2500, 2900]
    path = write_video(tmp_path / ("vfr.mkv" if fmt else "vfr.mp4"), len(pts_ms), pts_ms=pts_ms, fmt=fmt)
    result = load_video(path, 6)
    # D = last pts + one nominal frame (2.94 s); centres 0.245, 0.735, 1.225, 1.715, 2.205, 2.695 s
    assert result.duration == pytest.approx(2.9 + 1 / RATE, abs=1e-6)
    expected = [3, 5, 6, 7, 9, 10]
    assert indices(result) == expected
    assert result.timestamps == pytest.approx([pts_ms[i] / 1000 for i in expected], abs=1e-9)


def test_seeking_decodes_a_fraction_of_a_long_video(videos, monkeypatch):
    decoded = {}
    pick = video_io._Sampler.pick

    def counting_pick(self, times, **kwargs):
        frames = pick(self, times, **kwargs)
        decoded["frames"], decoded["seeks"] = self.decoded, self.seeks
        return frames

    monkeypatch.setattr(video_io._Sampler, "pick", counting_pick)
    seeking = load_video(videos["long"], 4)
    auto_counts = dict(decoded)
    sequential = load_video(videos["long"], 4, strategy="sequential")
    assert indices(seeking) == indices(sequential) == [50, 150, 250, 350]
    # 4 times 4 s apart, keyframes every 1 s: ~1 GOP decoded per time instead of everything up to 350
    assert auto_counts["seeks"] >= 3
    assert auto_counts["frames"] < 150 < decoded["frames"]


# -- rotation ---------------------------------------------------------------------------------------------------


def white_quadrant(image: Image.Image) -> str:
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    h, w = pixels.shape
    quadrants = {
        "top-left": pixels[: h // 2, : w // 2],
        "top-right": pixels[: h // 2, w // 2 :],
        "bottom-left": pixels[h // 2 :, : w // 2],
        "bottom-right": pixels[h // 2 :, w // 2 :],
    }
    return max(quadrants, key=lambda name: quadrants[name].mean())


@pytest.mark.parametrize(
    ("rotation", "size", "quadrant"),
    [
        (None, (W, H), "top-left"),
        ((90, False), (H, W), "bottom-left"),  # display matrix says: turn 90 degrees counter-clockwise
        ((-90, False), (H, W), "top-right"),  # ... clockwise (a phone held upright: "rotate=90" in old tags)
        ((180, False), (W, H), "bottom-right"),
        ((0, True), (W, H), "top-right"),  # mirrored
        ((90, True), (H, W), "bottom-right"),  # counter-clockwise, then mirrored
    ],
)
def test_display_matrix_is_applied_so_frames_show_upright(tmp_path, rotation, size, quadrant):
    path = write_video(tmp_path / "rot.mp4", 10, marker=True, rotation=rotation)
    result = load_video(path, 2)
    assert [image.size for image in result.frames] == [size, size]
    assert [white_quadrant(image) for image in result.frames] == [quadrant, quadrant]


# -- damaged data -----------------------------------------------------------------------------------------------


def test_corrupt_bytes_in_the_middle_are_skipped_and_counted(videos, tmp_path):
    data = bytearray(videos["long"].read_bytes())
    start, end = data.index(b"mdat") + 8, data.index(b"moov")  # the frames' data, then the index
    assert start < end
    middle = (start + end) // 2
    data[middle : middle + 64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(data)
    result = load_video(path, 8, strategy="sequential")  # decodes through the damage
    assert len(result.frames) == 8
    counts = [int(m.group(1)) for note in result.notes if (m := re.fullmatch(r"skipped (\d+) corrupt packets", note))]
    assert len(counts) == 1 and counts[0] > 0
    assert indices(result)[:3] + indices(result)[-3:] == [25, 75, 125, 275, 325, 375]  # far from the damage
    every = load_video(path, 400)
    assert len(every.frames) < 400  # the frames of the skipped packets are not there to pick
    assert every.timestamps == sorted(set(every.timestamps))
    assert any(note.startswith("skipped ") for note in every.notes)


def remux(source: Path, path: Path, replace) -> Path:
    """Copy `source`'s video packets into `path`, passing each (index, payload) through `replace`."""
    with av.open(str(source)) as src, av.open(str(path), "w", format="matroska") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for i, packet in enumerate(p for p in src.demux(stream_in) if p.size):
            new = av.Packet(replace(i, bytes(packet)))
            new.pts, new.dts, new.time_base, new.is_keyframe = packet.pts, packet.dts, packet.time_base, True
            new.stream = stream_out
            dst.mux(new)
    return path


def test_a_mostly_corrupt_stream_is_refused(videos, tmp_path):
    rng = np.random.default_rng(1)
    path = remux(videos["mp4"], tmp_path / "bad.mkv", lambda i, data: data if i % 4 == 0 else rng.bytes(len(data)))
    with pytest.raises(MediaError, match=r"of \d+ video packets failed to decode; the stream is too damaged"):
        load_video(path, 8)


def test_a_stream_without_decodable_frames_is_refused(tmp_path):
    path = tmp_path / "noise.nut"
    rng = np.random.default_rng(2)
    with av.open(str(path), "w") as container:  # h264 packets of noise, without parameter sets
        stream = container.add_stream("h264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(5):  # too few to trip the corrupt-fraction limit: the end of the data decides
            packet = av.Packet(rng.bytes(300))
            packet.pts = packet.dts = i
            packet.stream = stream
            container.mux(packet)
    with pytest.raises(MediaError, match=r"no decodable video frames \(5 packets read, \d failed to decode\)"):
        load_video(path, 8)


def test_truncated_file_with_its_index_at_the_end_is_refused(videos, tmp_path):
    path = tmp_path / "cut.mp4"
    path.write_bytes(videos["mp4"].read_bytes()[: videos["mp4"].stat().st_size // 2])
    with pytest.raises(MediaError, match=r"cut\.mp4: cannot be opened as a video; .*truncated"):
        load_video(path, 8)


def test_truncated_file_with_its_index_in_front_is_refused(tmp_path):
    full = tmp_path / "faststart.mp4"
    container = av.open(str(full), "w", options={"movflags": "faststart"})
    stream = container.add_stream(CODEC, rate=RATE)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    for i in range(100):
        frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), colour(i), np.uint8), format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    data = full.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"video data ends at \d+\.\d\d s but the file declares 4\.00 s; .*truncated"):
        load_video(path, 8)


# -- not a (usable) video ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="video file not found: .*nope.mp4"):
        load_video(tmp_path / "nope.mp4", 8)
    with pytest.raises(MediaError, match="video file not found"):
        load_video(tmp_path, 8)  # a directory


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty \(0 bytes\)"):
        load_video(tmp_path / "empty.mp4", 8)


def test_raw_stream_without_timestamps(tmp_path):
    path = write_video(tmp_path / "raw.h264", 10, fmt="h264")
    with pytest.raises(MediaError, match="carry no timestamps"):
        load_video(path, 8)


def test_random_bytes(tmp_path):
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(3).bytes(5000))
    with pytest.raises(MediaError, match="cannot be opened as a video"):
        load_video(tmp_path / "noise.mp4", 8)


@pytest.mark.parametrize(("name", "fmt"), [("still.png", "PNG"), ("still.jpg", "JPEG"), ("png_named.mp4", "PNG")])
def test_still_images_are_refused(tmp_path, name, fmt):
    Image.new("RGB", (W, H), (200, 10, 10)).save(tmp_path / name, format=fmt)
    with pytest.raises(MediaError, match="is a still image .*, not a video"):
        load_video(tmp_path / name, 8)


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(MediaError, match=r"has no video stream \(audio streams only\)"):
        load_video(path, 8)


def test_absurd_resolution_is_refused_before_decoding(tmp_path):
    path = tmp_path / "wide.nut"
    with av.open(str(path), "w") as container:  # raw frames: cheap to write at any size
        stream = container.add_stream("rawvideo", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = MAX_VIDEO_SIDE + 16, 128, "gray"
        frame = av.VideoFrame(stream.width, stream.height, "gray")
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(MediaError, match=rf"is {MAX_VIDEO_SIDE + 16}x128, above the limit of {MAX_VIDEO_SIDE} px"):
        load_video(path, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 0}, "num_frames must be an integer >= 1"),
        ({"num_frames": -3}, "num_frames must be an integer >= 1"),
        ({"num_frames": 2.5}, "num_frames must be an integer >= 1"),
        ({"num_frames": True}, "num_frames must be an integer >= 1"),
        ({"num_frames": 8, "fps": -1.0}, "fps must be a finite number >= 0"),
        ({"num_frames": 8, "fps": float("nan")}, "fps must be a finite number >= 0"),
        ({"num_frames": 8, "fps": float("inf")}, "fps must be a finite number >= 0"),
        ({"num_frames": 8, "strategy": "fast"}, "unknown decoding strategy 'fast'"),
        ({"num_frames": 8, "sampling": "random"}, "unknown frame sampling 'random'; choose one of centres, linspace"),
        ({"num_frames": 8, "size": 448}, "size must be (width, height) in pixels"),
        ({"num_frames": 8, "size": (448, 0)}, "size must be (width, height) in pixels"),
        ({"num_frames": 8, "size": (448.0, 448)}, "size must be (width, height) in pixels"),
        ({"num_frames": 8, "size": (448, 448, 3)}, "size must be (width, height) in pixels"),
    ],
)
def test_bad_arguments_are_refused(videos, kwargs, message):
    with pytest.raises(MediaError, match=re.escape(message)):
        load_video(videos["mp4"], **kwargs)
