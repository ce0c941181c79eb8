"""Measurements of `nvila bench`: cases, timing, peak memory and the machine, in one process.

Owns: the case list (image sizes, video frame counts), `measure_case` (visual tokens, vision time,
time to first token, decode throughput, peak memory, repeated with a warm-up), `run_bench_cases` (every
model over every case, one model in memory at a time), the result record (JSON round trip, merging a run
of extra cases into a saved one) and the
arithmetic for the fraction of a GPU's peak. Does not own model building (`peers`) or reports (`report`).

Definitions (batch of one, greedy, inputs already preprocessed and on the device):
- vision ms: the time spent in the visual modules (tower, projector; `BenchModel.visual_modules`) during the timed
  prefill (`ModuleTimer`), so the tower runs once per repeat, not again on its own;
- TTFT ms: visual path + LLM prefill + first token, i.e. `prefill` then argmax;
- decode tok/s: the next `decode_tokens` tokens with the KV cache, after the first;
- peak MB: memory above the level before the TTFT + decode run (activations + KV cache, not weights).
  CUDA: the caching allocator's peak. CPU (Linux): the process's peak RSS, reset through
  /proc/self/clear_refs after freed heap memory is returned with malloc_trim.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import logging
import os
import platform
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nvila.bench import CASE_SETS, REAL_WIDTH_SIZES
from nvila.bench.peers import VIDEO_FRAME_SIZE, BenchInputs, BenchModel, build_model, text_config
from nvila.errors import ConfigError
from nvila.models.nvila.configuration_nvila import TextConfig

log = logging.getLogger("nvila.bench")

IMAGE_SIZES: tuple[tuple[int, int], ...] = ((448, 448), (896, 896), (1344, 896), (1920, 1080))
VIDEO_FRAMES: tuple[int, ...] = (8, 32, 64, 256)


@dataclass(frozen=True)
class Case:
    """One input: an image of width x height, or a video of `frames` sampled frames."""

    kind: str  #: "image" or "video"
    width: int = 0
    height: int = 0
    frames: int = 0

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}" if self.kind == "image" else f"{self.frames} frames"

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def cases_for(
    selection: str,
    max_frames: int,
    frames: Sequence[int] | None = None,
    images: Sequence[tuple[int, int]] | None = None,
) -> tuple[list[Case], list[str]]:
    """The cases of "images", "videos" or "all", and notes on what `max_frames` left out.

    `frames` replaces the standard video lengths (`VIDEO_FRAMES` up to `max_frames`) by exactly these, `images` the
    standard image sizes (`IMAGE_SIZES`, width x height) by exactly these.
    """
    if selection not in CASE_SETS:
        raise ConfigError(f"unknown case set {selection!r}; known: {', '.join(CASE_SETS)}")
    cases: list[Case] = []
    notes: list[str] = []
    if selection in ("images", "all"):
        cases += [Case("image", w, h) for w, h in sorted(set(images or IMAGE_SIZES), key=lambda s: (s[0] * s[1], s))]
    if selection in ("videos", "all") and frames:
        cases += [Case("video", frames=n) for n in sorted(set(frames))]
    elif selection in ("videos", "all"):
        cases += [Case("video", frames=n) for n in VIDEO_FRAMES if n <= max_frames]
        skipped = [n for n in VIDEO_FRAMES if n > max_frames]
        if skipped:
            notes.append(skipped_note(skipped, f"frames capped at {max_frames}"))
    return cases, notes


_SKIPPED = re.compile(r"videos of ([\d, ]+) frames were not run(?: \((.*)\))?")


def skipped_note(frames: Sequence[int], reason: str | None) -> str:
    return f"videos of {', '.join(map(str, frames))} frames were not run" + (f" ({reason})" if reason else "")


# ---- results -------------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """One model on one case. Lists hold one value per repeat; `error` is set when the case could not run."""

    model: str
    case: str
    kind: str
    width: int = 0
    height: int = 0
    frames: int = 0
    visual_tokens: int = 0
    tower_patches: int = 0
    prompt_tokens: int = 0
    vision_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    decode_tok_s: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    error: str | None = None
    #: the case whose measurement this one repeats: its inputs had exactly the same shapes (not run again)
    same_as: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.ttft_ms)

    def repeat_of(self, other: Measurement) -> None:
        """Take `other`'s times, memory and error: this case's inputs cost exactly what `other`'s did."""
        self.vision_ms, self.ttft_ms, self.decode_tok_s = (
            list(other.vision_ms),
            list(other.ttft_ms),
            list(other.decode_tok_s),
        )
        self.peak_mb, self.error, self.same_as = other.peak_mb, other.error, other.case


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class BenchResult:
    """Everything a report needs: machine, settings, the models and their measurements."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    models: list[dict[str, Any]]
    measurements: list[Measurement]
    notes: list[str] = field(default_factory=list)

    def find(self, model: str, case: str) -> Measurement | None:
        return next((m for m in self.measurements if m.model == model and m.case == case), None)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> BenchResult:
        data = json.loads(text)
        data["measurements"] = [Measurement(**m) for m in data["measurements"]]
        return cls(**data)


#: Settings two runs must share for their measurements to sit in one report.
MERGE_KEYS = ("size", "dtype", "decode_tokens", "video_frame_size", "text_config")


def check_mergeable(base: BenchResult, settings: dict[str, Any], machine: dict[str, Any]) -> None:
    """Raise `ConfigError` unless a run with `settings` (those given of `MERGE_KEYS`) on `machine` fits `base`."""
    for key in (k for k in MERGE_KEYS if k in settings):
        if base.settings.get(key) != settings[key]:
            raise ConfigError(
                f"cannot merge runs with different {key} ({base.settings.get(key)} vs {settings[key]}); "
                "rerun the extra cases with the saved run's settings"
            )
    for key in ("cpu", "device_name"):
        if base.machine.get(key) != machine.get(key):
            raise ConfigError(
                f"cannot merge runs from different machines ({key} {base.machine.get(key)!r} vs {machine.get(key)!r})"
            )


def merge_results(base: BenchResult, extra: BenchResult) -> BenchResult:
    """`base` with the measurements of `extra` (a run of a few more cases) added, replacing the same model and case.

    Ratios stay within one run as long as `extra` measured every model it is compared with on its cases.
    `extra` is recorded in `settings["merged_runs"]` (its command, cases, repeats and CPU load), and the
    note on skipped video lengths keeps only those still missing.
    """
    check_mergeable(base, extra.settings, extra.machine)
    new_keys = {(m.model, m.case) for m in extra.measurements}
    measurements = [m for m in base.measurements if (m.model, m.case) not in new_keys] + extra.measurements
    measurements.sort(key=lambda m: (m.kind != "image", m.width * m.height if m.kind == "image" else m.frames))
    known = {info["name"] for info in base.models}
    models = base.models + [info for info in extra.models if info["name"] not in known]
    measured = {m.frames for m in measurements if m.kind == "video"}
    notes = []
    for note in [*base.notes, *(n for n in extra.notes if n not in base.notes)]:
        match = _SKIPPED.fullmatch(note)
        if match is None:
            notes.append(note)
            continue
        missing = [n for n in map(int, match.group(1).split(",")) if n not in measured]
        if missing:
            notes.append(skipped_note(missing, match.group(2)))
    run = {
        "command": extra.settings.get("command", ""),
        "cases": list(dict.fromkeys(m.case for m in extra.measurements)),
        "repeats": extra.settings["repeats"],
        "warmup": extra.settings.get("warmup", True),
        "torch_threads": extra.machine.get("torch_threads"),
        "load_average": extra.machine.get("load_average"),
    }
    settings = {**base.settings, "merged_runs": [*base.settings.get("merged_runs", []), run]}
    return BenchResult(base.machine, settings, models, measurements, notes)


# ---- machine and memory --------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    import transformers

    info = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "device_name": "cpu",
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["device_memory_gb"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    return info


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory (MB) above the level at entry; `mb` is None where it cannot be measured."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self._base = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        with contextlib.suppress(OSError, AttributeError):  # give freed heap back, so reuse hides no peak
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
            self._base = _status_kb("VmRSS") or 0
        except OSError:
            self._base = -1
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            return
        peak = _status_kb("VmHWM")
        if self._base >= 0 and peak is not None:
            self.mb = max(0, peak - self._base) / 1024


# ---- timing --------------------------------------------------------------------------------------------
class ModuleTimer:
    """Milliseconds spent inside `modules` while the context is open (forward hooks; CUDA synchronised around each
    call), so the visual path is timed inside the prefill it belongs to instead of in a run of its own."""

    def __init__(self, modules: Sequence[nn.Module], device: torch.device) -> None:
        self.modules, self.device = list(modules), device
        self.ms = 0.0
        self._start = 0.0
        self._handles: list = []

    def _before(self, *_: object) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    def _after(self, *_: object) -> None:
        _sync(self.device)
        self.ms += (time.perf_counter() - self._start) * 1e3

    def __enter__(self) -> ModuleTimer:
        for module in self.modules:
            self._handles += [module.register_forward_pre_hook(self._before), module.register_forward_hook(self._after)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate_timed(bm: BenchModel, inputs: BenchInputs, decode_tokens: int) -> tuple[float, float, list[int]]:
    """Greedy generation: (TTFT ms, decode tokens/s, the tokens). No stop on EOS (random weights)."""
    device = bm.device
    cache = bm.new_cache()
    _sync(device)
    start = time.perf_counter()
    token = bm.prefill(inputs, cache).argmax(dim=-1)  # [1]
    _sync(device)
    ttft = (time.perf_counter() - start) * 1e3
    tokens = [token]
    start = time.perf_counter()
    for _ in range(decode_tokens):
        token = bm.step(token, cache).argmax(dim=-1)
        tokens.append(token)
    _sync(device)
    tok_s = decode_tokens / (time.perf_counter() - start)
    return ttft, tok_s, [int(t) for t in tokens]


def check_counts(bm: BenchModel, inputs: BenchInputs) -> int:
    """The model's visual feature count; raises `ValueError` when it differs from the prompt's placeholders."""
    n = bm.encode(inputs).shape[0]
    if n != inputs.visual_tokens:
        raise ValueError(f"{bm.name}: the prompt has {inputs.visual_tokens} visual positions but the model gives {n}")
    return n


def _case_inputs(bm: BenchModel, case: Case) -> tuple[Measurement, BenchInputs]:
    """A case's inputs on the model's device, and its measurement with the counts filled in."""
    m = Measurement(bm.name, case.label, case.kind, case.width, case.height, case.frames)
    raw = bm.video_inputs(case.frames) if case.kind == "video" else bm.image_inputs(case.width, case.height)
    inputs = raw.to(bm.device, bm.dtype)
    m.visual_tokens, m.tower_patches, m.prompt_tokens = inputs.visual_tokens, inputs.tower_patches, inputs.prompt_tokens
    return m, inputs


@torch.inference_mode()
def _warm_up(bm: BenchModel, inputs: BenchInputs, m: Measurement, decode_tokens: int) -> None:
    """Counts checked, then one untimed generation; out of memory is recorded in `m` (no timed run follows).

    Real widths on a CPU (minutes per run) skip it: every model's prefill checks the prompt's visual positions
    against its features itself, on the timed run.
    """
    try:
        check_counts(bm, inputs)
        generate_timed(bm, inputs, decode_tokens)
    except (torch.OutOfMemoryError, MemoryError) as e:
        _failed(m, e)


@torch.inference_mode()
def _repeat(bm: BenchModel, inputs: BenchInputs, m: Measurement, decode_tokens: int) -> None:
    """One timed generation under a memory probe, the visual path timed inside its prefill; appends to `m`."""
    if m.error is not None:
        return
    try:
        with PeakMemory(bm.device) as memory, ModuleTimer(bm.visual_modules, bm.device) as vision:
            ttft, tok_s, _ = generate_timed(bm, inputs, decode_tokens)
        m.vision_ms.append(vision.ms)
    except (torch.OutOfMemoryError, MemoryError) as e:
        _failed(m, e)
        return
    m.ttft_ms.append(ttft)
    m.decode_tok_s.append(tok_s)
    if memory.mb is not None:
        m.peak_mb = max(m.peak_mb or 0.0, memory.mb)


def _failed(m: Measurement, error: BaseException) -> None:
    """Record an out-of-memory case and go on with the next one."""
    m.error = f"out of memory: {str(error).splitlines()[0][:120]}" if str(error) else "out of memory"
    log.warning("%s on %s: %s", m.model, m.case, m.error)


def input_signature(inputs: BenchInputs) -> tuple:
    """What a run's cost depends on: the shape and dtype of every float tensor (pixels), the values of every other
    tensor (ids, grids) and every other argument."""
    parts = []
    for key, value in sorted(inputs.tensors.items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            parts.append((key, tuple(value.shape), str(value.dtype)))
        elif isinstance(value, torch.Tensor):
            parts.append((key, tuple(value.shape), tuple(value.flatten().tolist())))
        else:
            parts.append((key, repr(value)))
    return tuple(parts)


def measure_case(
    bm: BenchModel,
    case: Case,
    *,
    repeats: int = 3,
    decode_tokens: int = 16,
    warmup: bool = True,
    measured: dict[tuple, Measurement] | None = None,
) -> Measurement:
    """One model on one case: a warm-up (unless `warmup` is false), then `repeats` timed runs.

    measured: this model's earlier measurements by `input_signature`; a case whose inputs match one repeats it
    (`same_as`) instead of running identical work again (NVILA's 448x448 and 896x896 images are both 14 tiles).
    """
    m, inputs = _case_inputs(bm, case)
    if measured is not None:  # before the warm-up: a repeated case runs nothing
        key = input_signature(inputs)
        if key in measured:
            m.repeat_of(measured[key])
            return m
        measured[key] = m
    if warmup:
        _warm_up(bm, inputs, m, decode_tokens)
    for _ in range(repeats):
        _repeat(bm, inputs, m, decode_tokens)  # nothing after an out-of-memory error
    return m


def run_bench_cases(
    models: Sequence[str],
    cases: Sequence[Case],
    *,
    size: str,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int = 3,
    decode_tokens: int = 16,
    seed: int = 0,
    interleave: bool | None = None,
    notes: Sequence[str] = (),
    progress: bool = True,
) -> BenchResult:
    """Every model on every case, in this process.

    interleave (default: the narrow sizes): all models stay built and the repeats of a case take turns between
    models, so load from other processes falls on all of them alike. Otherwise one model is built (and freed)
    at a time, which real-width models need; at those sizes (`REAL_WIDTH_SIZES`) a CPU run has no warm-up, and a
    case whose inputs have exactly the shapes of an earlier case of the same model repeats its measurement.
    """
    from tqdm.auto import tqdm

    interleave = size not in REAL_WIDTH_SIZES if interleave is None else interleave
    warmup = size not in REAL_WIDTH_SIZES or device.type != "cpu"
    start_load = _load_average()
    measurements: list[Measurement] = []
    infos: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(models) * len(cases), desc="nvila bench", unit="case", disable=not progress)

    def build(name: str) -> BenchModel:
        bm = build_model(name, size, device=device, dtype=dtype, seed=seed)
        info = dataclasses.asdict(bm.info())
        info["weights_mb"] = sum(p.numel() * p.element_size() for p in bm.model.parameters()) / 2**20
        infos[name] = info
        return bm

    if interleave:
        built = [build(name) for name in models]
        for case in cases:
            bar.set_postfix_str(case.label)
            prepared = [(bm, *_case_inputs(bm, case)) for bm in built]
            for bm, m, inputs in prepared:
                _warm_up(bm, inputs, m, decode_tokens)
            for _ in range(repeats):
                for bm, m, inputs in prepared:
                    _repeat(bm, inputs, m, decode_tokens)  # nothing after an out-of-memory error
            measurements += [m for _, m, _ in prepared]
            del prepared
            bar.update(len(built))
    else:
        for name in models:
            bm = build(name)
            measured: dict[tuple, Measurement] = {}
            for case in cases:
                bar.set_postfix_str(f"{name} {case.label}")
                m = measure_case(
                    bm, case, repeats=repeats, decode_tokens=decode_tokens, warmup=warmup, measured=measured
                )
                measurements.append(m)
                bar.update()
            del bm
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    bar.close()
    machine = machine_info(device)
    machine["load_average"] = [start_load, _load_average()]
    settings = {
        "size": size,
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": repeats,
        "decode_tokens": decode_tokens,
        "seed": seed,
        "interleaved": interleave,
        "warmup": warmup,
        "video_frame_size": list(VIDEO_FRAME_SIZE),
        "text_config": dataclasses.asdict(text_config(size)),
    }
    return BenchResult(machine, settings, [infos[n] for n in models], measurements, list(notes))


def _load_average() -> float | None:
    """The 1-minute load average (other processes competing for the CPU), where the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---- fraction of the device's peak ---------------------------------------------------------------------
#: Dense bf16 tensor-core FLOP/s and memory bytes/s of known GPUs (vendor datasheets), matched by name.
DEVICE_PEAKS: tuple[tuple[str, float, float], ...] = (
    ("H200", 989e12, 4.8e12),
    ("H100 PCIe", 756e12, 2.0e12),
    ("H100", 989e12, 3.35e12),
    ("A100-SXM4-80GB", 312e12, 2.039e12),
    ("A100", 312e12, 1.555e12),
    ("L40S", 362e12, 0.864e12),
    ("RTX 4090", 165e12, 1.008e12),
)


def device_peak(device_name: str) -> tuple[str, float, float] | None:
    """(table name, FLOP/s, bytes/s) of the first table entry whose name is in `device_name`."""
    for name, flops, bandwidth in DEVICE_PEAKS:
        if name.lower() in device_name.lower():
            return name, flops, bandwidth
    return None


def _llm_linear_params(text: TextConfig) -> int:
    h, kv = text.hidden_size, text.num_key_value_heads * (text.hidden_size // text.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * text.intermediate_size  # q, o, k, v, gate/up/down
    return text.num_hidden_layers * per_layer


def prefill_flops(text: TextConfig, tokens: int) -> float:
    """LLM prefill FLOPs: 2 per weight per token, causal attention (QK and AV), logits of the last token."""
    linear = 2 * _llm_linear_params(text) * tokens
    attention = 2 * text.num_hidden_layers * tokens * tokens * text.hidden_size  # 4 l^2 h / 2 per layer
    return linear + attention + 2 * text.hidden_size * text.vocab_size


def decode_bytes(text: TextConfig, context: int, bytes_per_value: int) -> float:
    """Bytes one decode step must read: the LLM's linear weights, the LM head and the KV cache."""
    kv = text.num_key_value_heads * (text.hidden_size // text.num_attention_heads)
    weights = _llm_linear_params(text) + text.hidden_size * text.vocab_size
    cache = 2 * text.num_hidden_layers * kv * context
    return (weights + cache) * bytes_per_value
