"""Reading a video as a few sampled RGB frames (PyAV).

Owns: opening a video file, choosing the sample times (uniform over the video, or at a target fps capped at
N), decoding only what is needed to get the frame shown at each time, display-matrix rotation/flips, an
optional resize of each picked frame as soon as it is decoded (`size`: 256 frames of 1080p are never held at
full resolution), and refusing what cannot or should not be decoded with a `MediaError`. Does not own temporal
pooling or time tokens (video processing), nor images (`image_io`).

Sampling rule (all times in seconds from the video stream's start, computed exactly with fractions):
- D, the duration, runs from the stream's start to the end of its last packet (read from packet headers);
- uniform, sampling="centres" (default): the centres of N equal segments of D, t_i = (i + 1/2) * D / N;
- uniform, sampling="linspace": the official NVILA loader's frame indices k_i = round(linspace(0, n - 1, N))
  (numpy's rounding; first and last frame included), as times t_i = (k_i + 1/2) * D / n, the middle of frame
  k_i of a constant-rate video. n = round(D * average frame rate) (the header's frame count without a rate;
  segment centres, with a note, without either). Repeated indices (n < N) repeat the frame, as the official
  loader does, so N frames come back;
- fps > 0: t_j = (j + 1/2) / fps for every t_j < D (D / 2 when there is none); when that is more than N
  times, N uniform times instead (the whole video stays covered at a lower rate). The official loader's fps
  mode keeps the first N periods instead, dropping the rest of a long video; that is not reproduced;
- each time picks the frame *shown* at that time: the last frame whose pts <= t (pts * time_base, so
  variable frame rates are exact). A constant-rate video of n frames gives frame floor((i + 1/2) * n / N).
  With "centres", times that land on an already-picked frame (videos with fewer than N frames) are dropped,
  never repeated.
Both rules cover the whole video; "linspace" reproduces the official frames exactly for constant-rate videos.

Decoding never holds more than three decoded frames plus the chosen ones: it decodes forward to each time and
seeks (to the keyframe before the time) only when the container's index shows a keyframe between the current
position and the time, at least `SEEK_MIN_SKIP_FRAMES` ahead, i.e. when seeking skips decoding work. Without an
index it seeks when the gap exceeds `SEEK_MIN_GAP_S` and the longest keyframe interval seen so far.
"""

from __future__ import annotations

import bisect
import logging
import math
import numbers
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from nvila.argtypes import FRAME_SAMPLINGS
from nvila.errors import MediaError
from nvila.models.nvila.geometry import MAX_ASPECT_RATIO

logger = logging.getLogger(__name__)

#: Videos with a side longer than this are refused before decoding.
MAX_VIDEO_SIDE = 8192
#: Seek only when that skips decoding at least this many frames: a seek (flushing the threaded decoder) costs
#: about as much CPU as decoding ~30 frames (720p h264, benchmarks/video_sampling.py).
SEEK_MIN_SKIP_FRAMES = 32
#: Without a keyframe index, seek only when the next time is at least this far ahead (seconds).
SEEK_MIN_GAP_S = 2.0
#: A video whose truncated end lies more than this before a sample time is refused as truncated (seconds).
TRUNCATION_TOLERANCE_S = 1.0
#: Give up as undecodable when more than this fraction of the packets read fail to decode (after a few).
MAX_CORRUPT_FRACTION = 0.5
#: A seek that lands after its time is retried this many times, each twice as far back, then decoding restarts
#: from the beginning. Demuxers without an index (e.g. MPEG-TS) land near a time, not on the keyframe before
#: it; FFmpeg's decoders then drop the frames up to the next keyframe, which can lie past the time.
MAX_SEEK_RETRIES = 3
#: The duration is read from the packets of this many last seconds (seconds).
PROBE_TAIL_S = 5
STRATEGIES = ("auto", "seek", "sequential")
SAMPLINGS = FRAME_SAMPLINGS  #: the `sampling` rules of `load_video` (the options module owns the list)
#: The filter of the resize while decoding: the one `image_processing` resizes tiles with, so the two agree.
RESAMPLE = Image.Resampling.BICUBIC

# Display-matrix (a, b, c, d) signs, FFmpeg's convention (x' = a x + c y, y' = b x + d y, y pointing down),
# -> the PIL transpose that shows the frame upright. None: already upright.
_ORIENTATIONS: dict[tuple[int, int, int, int], Image.Transpose | None] = {
    (1, 0, 0, 1): None,
    (-1, 0, 0, 1): Image.Transpose.FLIP_LEFT_RIGHT,
    (1, 0, 0, -1): Image.Transpose.FLIP_TOP_BOTTOM,
    (-1, 0, 0, -1): Image.Transpose.ROTATE_180,
    (0, -1, 1, 0): Image.Transpose.ROTATE_90,  # 90 degrees counter-clockwise
    (0, 1, -1, 0): Image.Transpose.ROTATE_270,  # 90 degrees clockwise
    (0, 1, 1, 0): Image.Transpose.TRANSPOSE,
    (0, -1, -1, 0): Image.Transpose.TRANSVERSE,
}


@dataclass
class VideoFrames:
    """Frames sampled from one video, with what the sampling had to work around."""

    frames: list[Image.Image]  #: RGB, upright (display matrix applied), in time order; `size` when given
    timestamps: list[float]  #: presentation time of each frame, seconds from the video stream's start
    duration: float  #: seconds
    source_fps: float  #: the stream's average frame rate (0.0 when unknown)
    requested: int  #: the `num_frames` asked for; len(frames) can be smaller (see notes)
    notes: list[str] = field(default_factory=list)  #: one line per workaround, e.g. skipped corrupt packets


def load_video(
    path: str | os.PathLike,
    num_frames: int,
    fps: float = 0.0,
    *,
    sampling: str = "centres",
    size: tuple[int, int] | None = None,
    strategy: str = "auto",
) -> VideoFrames:
    """Sample up to `num_frames` frames from the video at `path` (see the module docstring for the rule).

    `fps` > 0 samples at that rate, capped at `num_frames`. `sampling` chooses the uniform rule: "centres"
    (segment centres) or "linspace" (the official NVILA frame indices). `size` = (width, height) px resizes
    each frame to exactly that (bicubic, after rotation) as soon as it is decoded, so the frames never sit in
    memory at full resolution; it is the resize `image_processing` gives a video frame for a tile of that
    size, which then has nothing left to do (identical pixels).
    `strategy` ("auto", "seek", "sequential") only changes how the same frames are reached; the non-default
    values exist for benchmarks and tests.
    """
    _check_request(num_frames, fps, strategy, sampling, size)
    num_frames, fps, path = int(num_frames), float(fps), _check_path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        duration = _duration(path, _declared_duration(stream))
        rate = stream.average_rate or stream.guessed_rate
        frame_count = max(1, round(duration * rate)) if rate else stream.frames or None
        times, notes = _sample_times(duration, num_frames, fps, sampling, frame_count)
        sampler = _Sampler(container, stream, path, duration, strategy, size)
        repeat = sampling == "linspace"
        picks = sampler.pick(times, repeat=repeat)
        notes += sampler.notes(len(times), num_frames, repeat=repeat)
    return VideoFrames(
        frames=[image for _, image in picks],
        timestamps=[float(t) for t, _ in picks],
        duration=float(duration),
        source_fps=float(rate) if rate else 0.0,
        requested=num_frames,
        notes=notes,
    )


def _check_request(num_frames: int, fps: float, strategy: str, sampling: str, size: tuple[int, int] | None) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 1:
        raise MediaError(f"num_frames must be an integer >= 1; got {num_frames!r}")
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps < 0:
        raise MediaError(f"fps must be a finite number >= 0 (0 = uniform sampling); got {fps!r}")
    if strategy not in STRATEGIES:
        raise MediaError(f"unknown decoding strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if sampling not in SAMPLINGS:
        raise MediaError(f"unknown frame sampling {sampling!r}; choose one of {', '.join(SAMPLINGS)}")
    if size is not None and not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and 1 <= n <= MAX_VIDEO_SIDE for n in size)
    ):
        raise MediaError(f"size must be (width, height) in pixels, each 1..{MAX_VIDEO_SIDE}, or None; got {size!r}")


def _check_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise MediaError(f"unsupported video input of type {type(path).__name__}; give a file path")
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video file not found: {path}")
    if path.stat().st_size == 0:
        raise MediaError(f"video file is empty (0 bytes): {path}")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        raise MediaError(
            f"{path}: cannot be opened as a video; it is corrupt, truncated or not a video ({_reason(e)})"
        ) from None
    name = container.format.name
    if name == "image2" or name.endswith("_pipe"):  # png_pipe, jpeg_pipe, webp_pipe, ...
        container.close()
        raise MediaError(f"{path}: is a still image ({name.removesuffix('_pipe')}), not a video; load it as an image")
    return container


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no"
        raise MediaError(f"{path}: has no video stream ({kinds} streams only)")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise MediaError(f"{path}: its video stream cannot be decoded (a codec this FFmpeg lacks, or a damaged header)")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width and height:
        _check_frame_size(width, height, path)
    stream.thread_type = "AUTO"  # frame + slice threads: ~1.5x faster h264 decoding than the default
    return stream


def _check_frame_size(width: int, height: int, path: Path) -> None:
    if width < 1 or height < 1:
        raise MediaError(f"{path}: video frames have no pixels ({width}x{height})")
    if max(width, height) > MAX_VIDEO_SIDE:
        raise MediaError(
            f"{path}: video is {width}x{height}, above the limit of {MAX_VIDEO_SIDE} px per side; downscale it first"
        )
    if max(width / height, height / width) > MAX_ASPECT_RATIO:
        raise MediaError(f"{path}: video is {width}x{height}, an aspect ratio above {MAX_ASPECT_RATIO:.0f}:1")


def _reason(error: av.error.FFmpegError) -> str:
    return f"ffmpeg: {error.strerror}" if getattr(error, "strerror", None) else f"ffmpeg: {error}"


def _declared_duration(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The video stream's own duration from the header (mp4, avi) or a Matroska DURATION tag; None if absent."""
    if stream.duration and stream.duration > 0:
        return Fraction(stream.duration) * stream.time_base
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration") or ""
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tag.strip())
    if match:
        hours, minutes, seconds = match.groups()
        return Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    return None  # the container's duration may include a longer audio track: not used for the video


def _duration(path: Path, declared: Fraction | None) -> Fraction:
    """Seconds from the video stream's start to the end of its last packet, from packet headers (no decoding).

    Headers are not trusted alone: an mp4 track's duration follows decode times, which for variable frame
    rates with B-frames can end well before the last frame is shown, and Matroska often has none. The packets
    of the last `PROBE_TAIL_S` seconds are read after seeking there; if that finds nothing (e.g. a truncated
    file whose index points past its data), every packet is read. A data end well before the declared end
    means a truncated file.
    """
    end = None
    with _open(path) as container:
        stream = _video_stream(container, path)
        hint = declared or (Fraction(container.duration, 1_000_000) if container.duration else None)
        if hint and hint > PROBE_TAIL_S:
            try:
                tail = math.floor((hint - PROBE_TAIL_S) / stream.time_base)
                container.seek((stream.start_time or 0) + tail, backward=True, stream=stream)
                end, _ = _packets_end(container, stream)
            except av.error.FFmpegError as e:
                logger.debug("%s: seek to the end failed (%s); reading every packet", path, e)
    if end is None:
        with _open(path) as container:
            end, packets = _packets_end(container, _video_stream(container, path))
        if end is None and packets:
            raise MediaError(f"{path}: its video packets carry no timestamps (a raw stream?); remux it into MP4 or MKV")
        if end is None:
            raise MediaError(f"{path}: its video stream holds no packets")
    if declared is not None and declared - end > TRUNCATION_TOLERANCE_S:
        raise MediaError(
            f"{path}: video data ends at {float(end):.2f} s but the file declares {float(declared):.2f} s; "
            "it looks truncated"
        )
    return end


def _packets_end(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[Fraction | None, int]:
    """(max(pts + duration) - start in seconds or None, packets seen) over the packets from here on."""
    start, end, packets, default = stream.start_time or 0, None, 0, _frame_ticks(stream)
    try:
        for packet in container.demux(stream):
            packets += bool(packet.size)
            if packet.pts is not None and packet.size:
                end = max(end or start, packet.pts + (packet.duration or default))
    except av.error.FFmpegError as e:  # damaged data: keep the end found so far
        logger.debug("stopped reading packets (%s)", e)
    return (None if end is None else Fraction(end - start) * stream.time_base), packets


def _frame_ticks(stream: av.video.stream.VideoStream) -> int:
    """The nominal duration of one frame in the stream's time base (0 when the rate is unknown)."""
    rate = stream.average_rate or stream.guessed_rate
    return int(1 / (rate * stream.time_base)) if rate else 0


def _sample_times(
    duration: Fraction, num_frames: int, fps: float, sampling: str, frame_count: int | None
) -> tuple[list[Fraction], list[str]]:
    """Sample times in seconds from the stream start (the module docstring's rule) and notes on what changed."""
    if duration <= 0:
        return [Fraction(0)], []
    notes = []
    if fps > 0:
        rate = Fraction(fps)
        count = math.ceil(duration * rate - Fraction(1, 2))  # j with (j + 1/2) / fps < D
        if count < 1:  # the video is shorter than half a period: its middle
            return [duration / 2], []
        if count <= num_frames:
            return [(j + Fraction(1, 2)) / rate for j in range(count)], []
        notes.append(
            f"fps={fps:g} gives {count} frames over {float(duration):.2f} s; capped at {num_frames} spread uniformly"
        )
    if sampling == "linspace" and frame_count is None:
        notes.append("the frame count is unknown (no frame rate): sampled segment centres instead of linspace")
    if sampling == "centres" or frame_count is None:
        return [(i + Fraction(1, 2)) * duration / num_frames for i in range(num_frames)], notes
    indices = np.round(np.linspace(0, frame_count - 1, num_frames)).astype(int)  # the official loader's indices
    return [(int(k) + Fraction(1, 2)) * duration / frame_count for k in indices], notes


class _Sampler:
    """Walks one video stream forward, returning the frame shown at each of a sorted list of times (in ticks).

    Holds at most three decoded frames: `prev` (the last one at or before the current time), `ahead` (the
    first one after it, kept for the next time) and `last` (the latest decoded, to report a truncated end).
    """

    def __init__(
        self, container, stream, path: Path, duration: Fraction, strategy: str, size: tuple[int, int] | None = None
    ) -> None:
        self.container, self.stream, self.path, self.duration = container, stream, path, duration
        self.strategy = strategy
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.time_base = stream.time_base
        self.start = stream.start_time or 0
        self.frame_ticks = _frame_ticks(stream)
        entries = stream.index_entries
        # Index timestamps are decode times; a keyframe shows this much later (B-frame delay, e.g. x264 in mp4).
        self.index_shift = max(0, self.start - entries[0].timestamp) if len(entries) else 0
        self.packets = self.corrupt_packets = self.corrupt_frames = self.decoded = self.picked = self.seeks = 0
        self.pos: int | None = None  # decode timestamp of the last packet sent to the decoder
        self.keyframe_gap = 0  # longest keyframe interval seen (ticks), for seeking without an index
        self.last_keyframe: int | None = None
        self.prev = self.ahead = self.last = None  # `last`: the latest frame decoded, for truncated ends
        self.eof = False
        self.sought = False  # decoding starts from a seek (not from the beginning of the stream)
        self.frames = self._decode()
        self.reformatter = VideoReformatter()

    def pick(self, times: list[Fraction], *, repeat: bool = False) -> list[tuple[Fraction, Image.Image]]:
        """(frame time in seconds from the start, RGB image) for each distinct frame shown at `times` (seconds).

        `repeat`: a time showing the frame already picked repeats it instead (one pick per time).
        """
        picks: list[tuple[Fraction, Image.Image]] = []
        last_pts = None
        for t in times:
            frame = self._frame_at(self.start + t / self.time_base)
            pts = _pts(frame)
            if pts == last_pts:  # already picked: a video with fewer frames than times
                if repeat:
                    picks.append(picks[-1])
                continue
            last_pts = pts
            self.picked += 1
            self.corrupt_frames += bool(frame.is_corrupt)
            picks.append((Fraction(pts - self.start) * self.time_base, self._to_image(frame)))
        return picks

    def notes(self, num_times: int, requested: int, *, repeat: bool = False) -> list[str]:
        notes = []
        if self.picked < num_times:
            known = self.stream.frames
            used = f"{self.picked} distinct, repeated to {num_times}" if repeat else str(self.picked)
            if known and known == self.picked:
                notes.append(f"video has {known} frames, {requested} requested: used {used}")
            else:
                notes.append(
                    f"{num_times - self.picked} of {num_times} sample times fell on an already-chosen frame "
                    f"(a short or variable-frame-rate video): used {used}"
                )
        if self.corrupt_packets:
            notes.append(f"skipped {self.corrupt_packets} corrupt packets")
        if self.corrupt_frames:
            notes.append(f"{self.corrupt_frames} returned frames were decoded from damaged data (errors concealed)")
        return notes

    # -- walking the stream ---------------------------------------------------------------------------------

    def _frame_at(self, target: Fraction):
        if self._should_seek(target) and self._seek_to(math.floor(target) - self.index_shift):
            self.prev = None
        misses = 0
        while True:
            frame = self._next_frame()
            if frame is None:
                return self._at_end(target)
            if _pts(frame) <= target:
                self.prev = frame
                continue
            self.ahead = frame
            if self.prev is not None:
                return self.prev
            if not self.sought:
                return frame  # decoding from the beginning: the time precedes the first frame
            misses += 1  # the seek landed after the target
            if not self._seek_back(target, misses):
                return frame
            self.prev = None

    def _at_end(self, target: Fraction):
        frame = self.prev if self.prev is not None else self.last
        if frame is None:
            raise MediaError(
                f"{self.path}: no decodable video frames ({self.packets} packets read, {self.corrupt_packets} "
                "failed to decode); the stream is corrupt or unsupported"
            )
        end = _pts(frame) + (frame.duration or self.frame_ticks)
        if self.prev is None or float((target - end) * self.time_base) > TRUNCATION_TOLERANCE_S:
            raise MediaError(
                f"{self.path}: decodable video ends at {float((end - self.start) * self.time_base):.2f} s of "
                f"{float(self.duration):.2f} s; the file looks truncated or damaged at the end"
            )
        return frame

    def _next_frame(self):
        if self.ahead is not None:
            frame, self.ahead = self.ahead, None
            return frame
        frame = next(self.frames, None)
        if frame is not None:
            self.decoded += 1
            self.last = frame
        return frame

    def _decode(self) -> Iterator:
        """Decoded frames from the current demuxer position; skips (and counts) packets that fail to decode."""
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:  # a demuxer error mid-file: treat as the end of the data
                logger.debug("%s: stopped reading at packet %d (%s)", self.path, self.packets, e)
                break
            self._track(packet)
            try:
                yield from packet.decode()
            except av.error.FFmpegError as e:
                self.corrupt_packets += 1
                logger.debug("%s: skipped a corrupt packet at pts %s (%s)", self.path, packet.pts, e)
                if self.corrupt_packets > 8 and self.corrupt_packets > MAX_CORRUPT_FRACTION * self.packets:
                    raise MediaError(
                        f"{self.path}: {self.corrupt_packets} of {self.packets} video packets failed to decode; "
                        "the stream is too damaged to use"
                    ) from None
        self.eof = True

    def _track(self, packet) -> None:
        if packet.size == 0:
            return  # the flush packet at the end
        self.packets += 1
        ts = packet.dts if packet.dts is not None else packet.pts
        if ts is None:
            return
        self.pos = ts
        if packet.is_keyframe:
            if self.last_keyframe is not None and ts > self.last_keyframe:
                self.keyframe_gap = max(self.keyframe_gap, ts - self.last_keyframe)
            self.last_keyframe = ts

    # -- seeking --------------------------------------------------------------------------------------------

    def _should_seek(self, target: Fraction) -> bool:
        if self.strategy == "sequential" or self.eof:
            return False
        if any(f is not None and _pts(f) > target for f in (self.prev, self.ahead)):
            return False  # the frame shown at the target is already decoded
        if self.strategy == "seek":
            return self.pos is None or target > self.pos
        entries = self.stream.index_entries
        if len(entries) > 1:  # exact: seek iff a keyframe lies far enough between the position and the target
            floor = None if self.pos is None else self.pos + SEEK_MIN_SKIP_FRAMES * self.frame_ticks
            return _keyframe_between(entries, floor, target - self.index_shift)
        gap = target - (self.start if self.pos is None else self.pos)
        return float(gap * self.time_base) > SEEK_MIN_GAP_S and gap > self.keyframe_gap

    def _seek_back(self, target: Fraction, misses: int) -> bool:
        """Retry a seek that landed after `target`: twice as far back each time, then from the beginning."""
        if misses <= MAX_SEEK_RETRIES:
            step = max(self.keyframe_gap, round(1 / self.time_base))  # a keyframe interval, at least a second
            return self._seek_to(math.floor(target) - self.index_shift - 2 ** (misses - 1) * step)
        logger.debug("%s: seeks keep landing after %s; decoding from the beginning", self.path, target)
        self.strategy = "sequential"
        rewound = self._seek_to(self.start)
        self.sought = False
        return rewound

    def _seek_to(self, ticks: int) -> bool:
        try:
            self.container.seek(ticks, backward=True, any_frame=False, stream=self.stream)
        except av.error.FFmpegError as e:  # unseekable input: keep decoding forward from here
            logger.debug("%s: seek failed (%s); decoding sequentially", self.path, e)
            self.strategy = "sequential"
            return False
        self.seeks += 1
        self.sought, self.eof = True, False
        self.frames.close()
        self.frames = self._decode()
        self.ahead = None
        return True

    def _to_image(self, frame) -> Image.Image:
        _check_frame_size(frame.width, frame.height, self.path)
        # One reusable single-threaded converter: per-frame threaded swscale setup costs more than it saves;
        # fromarray(to_ndarray()) is ~1.6x faster than VideoFrame.to_image for 720p.
        image = Image.fromarray(self.reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray())
        transpose = _orientation(frame)
        image = image.transpose(transpose) if transpose is not None else image
        return image if self.size is None else image.resize(self.size, RESAMPLE)


def _pts(frame) -> int:
    return frame.pts if frame.pts is not None else (frame.dts or 0)


def _keyframe_between(entries, floor: int | None, target: Fraction) -> bool:
    """Whether the index holds a keyframe with timestamp in (floor, target] (but the first, when floor is None).

    Walks back from the target only as far as `floor`, so over a whole sampling pass the walk touches each
    index entry about once.
    """
    i = bisect.bisect_right(entries, target, key=lambda e: e.timestamp) - 1
    floor = entries[0].timestamp if floor is None else floor  # no seek to the very first keyframe
    while i >= 0 and entries[i].timestamp > floor:
        if entries[i].is_keyframe:
            return True
        i -= 1
    return False


def _orientation(frame) -> Image.Transpose | None:
    """The transpose that shows `frame` upright, from its display matrix; None when upright or not a right angle."""
    for side_data in frame.side_data:
        if side_data.type.name != "DISPLAYMATRIX":
            continue
        a, b, _, c, d, *_ = struct.unpack("<9i", bytes(side_data))  # 16.16 fixed point
        signs = tuple(round(v / 65536) for v in (a, b, c, d))
        if signs not in _ORIENTATIONS:
            logger.debug("ignoring a display matrix that is not a right-angle rotation/flip: %s", signs)
            return None
        return _ORIENTATIONS[signs]
    return None
