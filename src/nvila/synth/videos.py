"""Events task: short videos of shapes that appear, move and disappear at known times, with localization
questions ("When does the red circle appear?" -> "1.5 - 4.0 seconds") and event questions (which object
moves, in which direction, which appears first, how many).

Owns the event timeline, frame rendering and mp4 encoding (mpeg4 via PyAV). Dimension letters: t frames,
h, w, c = 3.

Timing rule: every event boundary lies on a grid that is both a whole number of frames and a whole number of
tenths of a second (0.5 s at 8 fps), so the answer, written with one decimal, is exact. Frame i shows time
i / fps; an object is visible in the frames with start <= i / fps < end, and a move from p0 to p1 over
[start, end] puts it at p0 + (p1 - p0) * (t - start) / (end - start) at times t inside the move.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from nvila.synth import BACKGROUND, COLOURS, PALETTE, Sample, Turn, interval, pick_turns
from nvila.synth.shapes import SHAPES, draw_shape

FPS = 8
DURATIONS = (4, 8)  #: shortest and longest video, whole seconds
MAX_OBJECTS = 3  #: one per lane
MIN_SPAN_S = 1.0  #: shortest visible span and shortest move
MOVE_PROBABILITY = 0.5


def grid_step(fps: int) -> Fraction:
    """Smallest time step (s) that is a whole number of frames and of tenths of a second."""
    return Fraction(fps // math.gcd(fps, 10), fps)


def make_events(
    rng: np.random.Generator, size: tuple[int, int] = (96, 96), max_questions: int = 3, fps: int = FPS
) -> Sample:
    """A 4-8 s video of 1-3 shapes, each in its own lane, and 1..max_questions questions, the first a
    localization question."""
    scene = make_timeline(rng, size, fps)
    frames = render(scene)
    events = timeline_events(scene)
    loc, other = _questions(scene)
    meta = {"events": events, "duration": float(scene["duration"]), "fps": fps}
    return Sample(
        turns=pick_turns(rng, other, max_questions, first=loc), scene=scene, frames=frames, fps=fps, meta=meta
    )


def make_timeline(rng: np.random.Generator, size: tuple[int, int], fps: int) -> dict:
    """Objects with a lane, a visible span and maybe a move; times in seconds on the grid."""
    w, h = size
    duration = int(rng.integers(DURATIONS[0], DURATIONS[1] + 1))
    step = grid_step(fps)
    n_steps = int(duration / step)
    min_steps = math.ceil(MIN_SPAN_S / step)
    orientation = "rows" if rng.random() < 0.5 else "columns"  # rows: lanes are horizontal, moves left/right
    across, along = (h, w) if orientation == "rows" else (w, h)
    lane = across / MAX_OBJECTS
    r = max(4, min(w, h) // 12)
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    lanes = sorted(int(i) for i in rng.choice(MAX_OBJECTS, n, replace=False))
    colours = [COLOURS[i] for i in rng.choice(len(COLOURS), n, replace=False)]
    objects = []
    for lane_i, colour in zip(lanes, colours):
        a = int(rng.integers(0, n_steps - min_steps + 1))
        e = int(rng.integers(a + min_steps, n_steps + 1))
        p0 = int(rng.integers(r + 1, along - r - 1))
        move = None
        if rng.random() < MOVE_PROBABILITY:
            m0 = int(rng.integers(a, e - min_steps + 1))
            m1 = int(rng.integers(m0 + min_steps, e + 1))
            p1 = _destination(rng, p0, along, r)
            forward = p1 > p0  # right (rows) or down (columns)
            direction = ("right" if forward else "left") if orientation == "rows" else ("down" if forward else "up")
            move = {"start": float(m0 * step), "end": float(m1 * step), "to": p1, "direction": direction}
        objects.append(
            {
                "shape": SHAPES[int(rng.integers(len(SHAPES)))],
                "colour": colour,
                "r": r,
                "lane_centre": round(lane * (lane_i + 0.5)),
                "position": p0,  # along the lane, px
                "start": float(a * step),
                "end": float(e * step),
                "move": move,
            }
        )
    return {"size": [w, h], "duration": duration, "fps": fps, "orientation": orientation, "objects": objects}


def _destination(rng: np.random.Generator, p0: int, along: int, r: int) -> int:
    """A point of the lane at least 40% of its usable length away from p0."""
    lo, hi = r + 1, along - r - 2
    far = round(0.4 * (hi - lo))
    options = [p for p in range(lo, hi + 1) if abs(p - p0) >= far]
    return options[int(rng.integers(len(options)))]


def position(obj: dict, t: float) -> float:
    """Where the object is along its lane at time t (s)."""
    move = obj["move"]
    if move is None or t <= move["start"]:
        return obj["position"]
    if t >= move["end"]:
        return move["to"]
    return obj["position"] + (move["to"] - obj["position"]) * (t - move["start"]) / (move["end"] - move["start"])


def centre(scene: dict, obj: dict, t: float) -> tuple[float, float]:
    """(x, y) of the object's centre at time t."""
    p = position(obj, t)
    return (p, obj["lane_centre"]) if scene["orientation"] == "rows" else (obj["lane_centre"], p)


def visible(obj: dict, frame: int, fps: int) -> bool:
    return obj["start"] * fps <= frame < obj["end"] * fps


def render(scene: dict) -> np.ndarray:
    """All frames of the video: [t, h, w, 3] uint8."""
    fps = scene["fps"]
    frames = []
    for i in range(scene["duration"] * fps):
        image = Image.new("RGB", tuple(scene["size"]), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for obj in scene["objects"]:
            if visible(obj, i, fps):
                x, y = centre(scene, obj, i / fps)
                draw_shape(draw, obj["shape"], x, y, obj["r"], PALETTE[obj["colour"]])
        frames.append(np.asarray(image))
    return np.stack(frames)  # [t, h, w, 3]


def name(obj: dict) -> str:
    return f"{obj['colour']} {obj['shape']}"


def timeline_events(scene: dict) -> list[dict]:
    """The record's events: each object's visible span and its move, sorted by start time."""
    events = []
    for obj in scene["objects"]:
        events.append({"label": f"{name(obj)} appears", "start": obj["start"], "end": obj["end"]})
        if obj["move"] is not None:
            move = obj["move"]
            events.append(
                {"label": f"{name(obj)} moves {move['direction']}", "start": move["start"], "end": move["end"]}
            )
    return sorted(events, key=lambda e: (e["start"], e["end"], e["label"]))


def _questions(scene: dict) -> tuple[dict[str, list[Turn]], dict[str, list[Turn]]]:
    """(localization candidates, event-question candidates)."""
    objects = scene["objects"]
    movers = [o for o in objects if o["move"] is not None]
    loc = {
        "events/when_appear": [
            Turn(f"When does the {name(o)} appear?", interval(o["start"], o["end"]), "events/when_appear")
            for o in objects
        ],
        "events/when_move": [
            Turn(f"When does the {name(o)} move?", interval(o["move"]["start"], o["move"]["end"]), "events/when_move")
            for o in movers
        ],
    }
    starts = sorted(o["start"] for o in objects)
    first = [o for o in objects if o["start"] == starts[0]]
    other = {
        **loc,
        "events/count": [Turn("How many objects appear in the video?", str(len(objects)), "events/count")],
        "events/direction": [
            Turn(f"Which direction does the {name(o)} move?", o["move"]["direction"], "events/direction")
            for o in movers
        ],
        # asked only when the answer is unique
        "events/what_moves": [Turn("Which object moves?", name(movers[0]), "events/what_moves")]
        if len(movers) == 1
        else [],
        "events/first": [Turn("Which object appears first?", name(first[0]), "events/first")]
        if len(first) == 1 and len(objects) > 1
        else [],
    }
    return loc, other


def encode_mp4(path: str | Path, frames: np.ndarray, fps: int) -> None:
    """Write [t, h, w, 3] uint8 frames as an mpeg4 (Part 2) mp4, one frame every 1/fps s; byte-deterministic
    for the same frames (single-threaded encoder, no timestamps in the container)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000  # high for the size: colours and edges survive
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush
            container.mux(packet)
