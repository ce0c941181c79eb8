"""Time and peak memory of sampling N frames from a long 720p video: `nvila.video_io` against a naive loader.

    python benchmarks/video_sampling.py                 # 10-minute video, N = 8, 32, 256
    python benchmarks/video_sampling.py --minutes 1     # quicker

The test video (FFmpeg's testsrc2 pattern, 1280x720, libx264 ultrafast at a low bitrate) is generated once
and cached in --dir. Every case runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its
own; it runs --repeat times (once if the first run takes over SLOW_S seconds) and reports the fastest run's
wall and CPU (all threads) times and the largest peak. Cases:
- auto / seek / sequential: `load_video(path, N, strategy=...)`; auto is the default;
- resized: auto with `size=(448, 448)`: each frame resized to one 448 px tile as soon as it is decoded, as
  `nvila generate` and the processor read videos (the pixels the model gets are the same);
- naive: decode every frame to an RGB array and keep them all, then pick the same N (what loaders that read
  the whole clip do); its cost does not depend on N, so it runs once. It is skipped, with its estimated
  memory, when that would not fit in 70% of the available memory;
- floor: the interpreter with av/PIL/nvila imported and the file opened: the memory every case starts from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT = 1280, 720
STRATEGIES = ("auto", "seek", "sequential")
TILE = 448  #: the tile side of `resized`
SLOW_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the test video")
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the test video")
    parser.add_argument("--keyint", type=int, default=250, help="max frames between keyframes (x264's default)")
    parser.add_argument("--frames", default="8,32,256", help="comma-separated sample counts")
    parser.add_argument("--no-naive", action="store_true", help="do not run the naive loader (bound it instead)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case: the fastest time, the largest peak")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "nvila-bench", help="video cache")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.video)))
        return
    video = make_video(args.dir, args.minutes, args.fps, args.keyint)
    counts = [int(n) for n in args.frames.split(",")]
    report(video, counts, args)


# -- the test video ---------------------------------------------------------------------------------------------


def make_video(folder: Path, minutes: float, fps: int, keyint: int) -> Path:
    import av

    path = folder / f"testsrc2_{minutes:g}min_{HEIGHT}p{fps}_g{keyint}.mp4"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    seconds = minutes * 60
    print(f"generating {path} ({seconds:g} s of {WIDTH}x{HEIGHT} at {fps} fps) ...", file=sys.stderr)
    start = time.perf_counter()
    source = av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={fps}:duration={seconds:g}", format="lavfi")
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35", "g": str(keyint)}
        for frame in source.decode(video=0):
            frame.pts = None  # let the encoder number them
            frame.pict_type = av.video.frame.PictureType.NONE  # lavfi marks every frame I: x264 would obey
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    source.close()
    partial.rename(path)  # atomic: an interrupted run leaves no half video under the final name
    size = path.stat().st_size / 2**20
    print(f"  {time.perf_counter() - start:.0f} s, {size:.0f} MiB", file=sys.stderr)
    return path


# -- one case, in its own process ---------------------------------------------------------------------------------


def run_case(case: str, video: Path) -> dict:
    import av
    import numpy  # noqa: F401  (imported up front: every case, the floor included, pays for it)
    from PIL import Image

    from nvila.video_io import load_video

    name, _, count = case.partition(":")
    with av.open(str(video)) as container:
        total = container.streams.video[0].frames
    start, cpu_start = time.perf_counter(), cpu_seconds()
    if name == "floor":
        frames = 0
    elif name == "naive":
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            every = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        n = int(count)
        picked = [Image.fromarray(every[(2 * i + 1) * len(every) // (2 * n)]) for i in range(n)]
        frames = len(picked)
        del every
    elif name == "resized":
        frames = len(load_video(video, int(count), size=(TILE, TILE)).frames)
    else:
        frames = len(load_video(video, int(count), strategy=name).frames)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"case": case, "seconds": seconds, "cpu": cpu, "peak_mib": peak_mib, "frames": frames, "video_frames": total}


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (FFmpeg decodes on several)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(case: str, video: Path, repeat: int) -> dict:
    """Run `case` up to `repeat` times, each in a new process: the fastest run's times, the largest peak memory.

    A case whose first run takes over `SLOW_S` seconds runs once: its noise is small next to its length.
    """
    runs: list[dict] = []
    while len(runs) < max(1, repeat) and not (runs and runs[0]["seconds"] > SLOW_S):
        command = [sys.executable, __file__, "--case", case, "--video", str(video)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"case {case} failed:\n{result.stderr}")
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda run: run["seconds"])
    return {**best, "peak_mib": max(run["peak_mib"] for run in runs)}


# -- the table ----------------------------------------------------------------------------------------------------


def available_mib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def report(video: Path, counts: list[int], args: argparse.Namespace) -> None:
    import av

    floor = measure("floor", video, 1)
    total = floor["video_frames"]
    naive_need = total * WIDTH * HEIGHT * 3 / 2**20  # the RGB frames alone
    naive = None
    if naive_need < 0.7 * available_mib() and not args.no_naive:
        naive = measure(f"naive:{max(counts)}", video, args.repeat)
    rows = [{case: measure(f"{case}:{n}", video, args.repeat) for case in (*STRATEGIES, "resized")} for n in counts]

    print(f"\nvideo: {video.name}: {total} frames, {WIDTH}x{HEIGHT}, {args.minutes:g} min, keyint {args.keyint}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"
    )
    print(f"memory floor (imports + open file): {floor['peak_mib']:.0f} MiB peak RSS")
    if naive is None:
        # Without the naive run: its memory is at least its RGB frames, its time at least a full decode.
        full_decode = rows[counts.index(max(counts))]["sequential"]
        naive = {"seconds": full_decode["seconds"], "cpu": full_decode["cpu"], "peak_mib": naive_need, "bound": ">="}
        print(
            f"naive: not run; it would keep ~{naive_need / 1024:.1f} GiB of RGB frames "
            f"({available_mib() / 1024:.1f} GiB available); ratios below are lower bounds (>=): its RGB frames' "
            f"size, and the sequential decode of N={max(counts)}"
        )
    else:
        print(
            f"naive (decode all, keep all as RGB): {naive['seconds']:.2f} s wall, {naive['cpu']:.2f} s CPU, "
            f"{naive['peak_mib']:.0f} MiB peak RSS"
        )
    bound = naive.get("bound", "")
    header = (
        "| N | auto wall s | auto CPU s | auto peak MiB | seek CPU s | sequential CPU s | resized CPU s "
        "| resized peak MiB | naive/auto wall | naive/auto CPU | naive/auto memory |"
    )
    print("\n" + header + "\n|" + "---|" * (header.count("|") - 1))
    for n, row in zip(counts, rows):
        auto = row["auto"]
        print(
            f"| {n} | {auto['seconds']:.2f} | {auto['cpu']:.2f} | {auto['peak_mib']:.0f} | {row['seek']['cpu']:.2f} | "
            f"{row['sequential']['cpu']:.2f} | {row['resized']['cpu']:.2f} | {row['resized']['peak_mib']:.0f} | "
            f"{bound}{naive['seconds'] / auto['seconds']:.1f}x | "
            f"{bound}{naive['cpu'] / auto['cpu']:.1f}x | {bound}{naive['peak_mib'] / auto['peak_mib']:.1f}x |"
        )
    print("\nwall times vary with other load on the machine; CPU times (all threads) much less.")


if __name__ == "__main__":
    main()
