"""Server settings and the limits that protect one machine: sizes, counts, time and admission.

Owns: `ServeSettings` (every knob of `nvila serve`, validated), `Admission` (a bound on the requests being
served or queued at once; beyond it requests are refused with 429) and `Ticket` (one admitted request's
slot, released exactly once). Does not own the HTTP answers (`app`) or media decoding (`media`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from nvila.argtypes import check_frame_sampling
from nvila.engine.config import EngineConfig
from nvila.errors import ConfigError
from nvila.models.nvila.geometry import MAX_IMAGE_PIXELS

MiB = 1024 * 1024


@dataclass
class ServeSettings:
    """How `nvila serve` answers; the defaults suit one GPU and a handful of clients."""

    model_name: str = "nvila"  #: the id in /v1/models; requests naming another model get 404
    api_key: str | None = None  #: when set, /v1/* needs `Authorization: Bearer <api_key>`
    allow_local_media: Path | None = None  #: image / video paths and file:// URLs are read only inside this folder
    max_concurrent: int = 64  #: requests served or queued at once (up to `engine.max_batch` generate together)
    max_tokens_cap: int = 2048  #: the largest max_tokens a request may ask for
    default_max_tokens: int = 512  #: max_tokens when a request gives none (clamped to max_tokens_cap)
    timeout_s: float = 300.0  #: per request, queueing included; then 504 (or an error event mid-stream)
    max_request_bytes: int = 32 * MiB  #: request body size; base64 images count here (x4/3)
    max_image_bytes: int = 16 * MiB  #: one encoded image file
    max_images: int = 8  #: images per request, over all messages
    max_image_pixels: int = 40_000_000  #: width x height of one image (checked from its header, before decoding)
    max_video_bytes: int = 64 * MiB  #: one encoded video file (inline ones are also bounded by max_request_bytes)
    max_frames: int = 32  #: video frames per request, over all videos; each video gets min(model's, this)
    max_frame_pixels: int = 3840 * 2160  #: width x height of a video's frames (checked from its headers)
    video_timestamps: bool = False  #: write frame times before each video (a request's "video_timestamps" wins)
    frame_sampling: str = "centres"  #: "centres" or "linspace" (`video_io.load_video`; a request's field wins)
    engine: EngineConfig = field(default_factory=EngineConfig)  #: batching slots, sequence length, caches

    def __post_init__(self) -> None:
        positive = {
            "max_concurrent": self.max_concurrent,
            "max_tokens_cap": self.max_tokens_cap,
            "default_max_tokens": self.default_max_tokens,
            "timeout_s": self.timeout_s,
            "max_request_bytes": self.max_request_bytes,
            "max_image_bytes": self.max_image_bytes,
            "max_images": self.max_images,
            "max_image_pixels": self.max_image_pixels,
            "max_video_bytes": self.max_video_bytes,
            "max_frames": self.max_frames,
            "max_frame_pixels": self.max_frame_pixels,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        check_frame_sampling(self.frame_sampling, "frame_sampling")
        if self.max_image_pixels > MAX_IMAGE_PIXELS:
            raise ConfigError(f"max_image_pixels must be <= {MAX_IMAGE_PIXELS:,} (the decoder's own limit)")
        if self.allow_local_media is not None:
            folder = Path(self.allow_local_media).expanduser().resolve()
            if not folder.is_dir():
                raise ConfigError(f"--allow-local-media folder not found: {self.allow_local_media}")
            self.allow_local_media = folder
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens_cap)


class Ticket:
    """One admitted request's slot; `release` may be called any number of times, from any thread."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._admission._release()


class Admission:
    """Counts admitted requests (queued or generating) and refuses new ones beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def try_acquire(self) -> Ticket | None:
        """A ticket, or None when `limit` requests are already in flight."""
        with self._lock:
            if self._in_flight >= self.limit:
                return None
            self._in_flight += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
