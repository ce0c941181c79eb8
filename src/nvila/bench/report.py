"""Reports of `nvila bench`: markdown tables, plots and findings from a `BenchResult`.

Owns: `write_report(result, out)` (the markdown file plus PNG plots in a folder named after it, both
written atomically), the tables, the ratios against peers measured in the same run, the fraction of a known
GPU's peak, and the findings stated from the numbers. Does not measure anything (`runner`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from nvila.atomic import atomic_write, atomic_write_text
from nvila.bench import REAL_WIDTH_SIZES, VARIANTS
from nvila.bench.runner import BenchResult, Measurement, decode_bytes, device_peak, median, prefill_flops
from nvila.models.nvila.configuration_nvila import TextConfig

#: The peers every NVILA number is compared with (when they were measured).
REFERENCES = ("qwen2-vl", "llava-onevision")
NVILA_MODELS = ("nvila", "nvila-lite", *VARIANTS)  # every variant is an NVILA model
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


# ---- formatting ----------------------------------------------------------------------------------------
def fmt_spread(values: Sequence[float], digits: int = 0) -> str:
    """'median (min-max)' of repeated values."""
    if not values:
        return "-"
    med = median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}x"


def fmt_count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def ratio(result: BenchResult, m: Measurement, reference: str, metric: Callable[[Measurement], float]) -> float | None:
    """metric(m) / metric(reference on the same case), None when the reference did not run."""
    ref = result.find(reference, m.case)
    if ref is None or not ref.ok or not m.ok:
        return None
    denominator = metric(ref)
    return metric(m) / denominator if denominator else None


def _tokens(m: Measurement) -> float:
    return float(m.visual_tokens)


def _ttft(m: Measurement) -> float:
    return median(m.ttft_ms)


def _vision(m: Measurement) -> float:
    return median(m.vision_ms)


def _labels(result: BenchResult) -> dict[str, str]:
    return {info["name"]: info["label"] for info in result.models}


def ordered(result: BenchResult, kind: str | None = None) -> list[Measurement]:
    """Measurements of one kind (or all) by case, in run order, then by model, in the models' order."""
    model_rank = {info["name"]: k for k, info in enumerate(result.models)}
    case_rank: dict[str, int] = {}
    for m in result.measurements:
        case_rank.setdefault(m.case, len(case_rank))
    chosen = [m for m in result.measurements if kind is None or m.kind == kind]
    return sorted(chosen, key=lambda m: (m.kind != "image", case_rank[m.case], model_rank.get(m.model, 99)))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


# ---- tables --------------------------------------------------------------------------------------------
def case_table(result: BenchResult, kind: str) -> list[str]:
    """One row per (case, model): counts, times with spread, memory and ratios against the first reference."""
    labels = _labels(result)
    ref = REFERENCES[0]
    ref_label = labels.get(ref, ref)
    header = [
        "input",
        "model",
        "visual tokens",
        "tower patches",
        "vision ms",
        "TTFT ms",
        "decode tok/s",
        "peak MB",
        f"tokens vs {ref_label}",
        f"vision vs {ref_label}",
        f"TTFT vs {ref_label}",
    ]
    rows = []
    for m in ordered(result, kind):
        case = f"{m.case} (= {m.same_as})" if m.same_as else m.case
        if not m.ok:
            rows.append([case, labels.get(m.model, m.model), f"{m.visual_tokens:,}", "-", m.error or "not run"])
            rows[-1] += ["-"] * (len(header) - len(rows[-1]))
            continue
        rows.append(
            [
                case,
                labels.get(m.model, m.model),
                f"{m.visual_tokens:,}",
                f"{m.tower_patches:,}",
                fmt_spread(m.vision_ms),
                fmt_spread(m.ttft_ms),
                fmt_spread(m.decode_tok_s, 1),
                "-" if m.peak_mb is None else f"{m.peak_mb:,.0f}",
                fmt_ratio(ratio(result, m, ref, _tokens)),
                fmt_ratio(ratio(result, m, ref, _vision)),
                fmt_ratio(ratio(result, m, ref, _ttft)),
            ]
        )
    return _table(header, rows)


def nvila_ratio_table(result: BenchResult) -> list[str]:
    """NVILA and NVILA-Lite against every reference peer: visual tokens and TTFT ratios per case."""
    labels = _labels(result)
    refs = [r for r in REFERENCES if any(m.model == r for m in result.measurements)]
    header = ["input", "model"]
    for r in refs:
        header += [f"tokens vs {labels.get(r, r)}", f"TTFT vs {labels.get(r, r)}"]
    rows = []
    for m in ordered(result):
        if m.model not in NVILA_MODELS:
            continue
        row = [m.case, labels.get(m.model, m.model)]
        for r in refs:
            row += [fmt_ratio(ratio(result, m, r, _tokens)), fmt_ratio(ratio(result, m, r, _ttft))]
        rows.append(row)
    return _table(header, rows)


def model_table(result: BenchResult) -> list[str]:
    rows = [
        [
            info["label"],
            info["geometry"],
            info["tower"],
            fmt_count(info["visual_params"]),
            fmt_count(info["llm_params"]),
        ]
        for info in result.models
    ]
    return _table(["model", "how media become tokens", "vision tower", "visual params", "LLM params"], rows)


def peak_table(result: BenchResult) -> list[str]:
    """Achieved LLM prefill FLOP/s and decode bytes/s as a fraction of the device's peak (known GPUs only)."""
    peak = device_peak(result.machine.get("device_name", ""))
    if peak is None:
        return []
    name, peak_flops, peak_bw = peak
    text = TextConfig(**result.settings["text_config"])
    value_bytes = DTYPE_BYTES.get(result.settings["dtype"], 2)
    decode_tokens = result.settings["decode_tokens"]
    labels = _labels(result)
    rows = []
    for m in (m for m in ordered(result) if m.ok):
        prefill_s = (median(m.ttft_ms) - median(m.vision_ms)) / 1e3
        flops = prefill_flops(text, m.prompt_tokens) / prefill_s if prefill_s > 0 else float("nan")
        context = m.prompt_tokens + decode_tokens // 2  # the mean context over the decode steps
        bandwidth = decode_bytes(text, context, value_bytes) * median(m.decode_tok_s)
        rows.append(
            [
                m.case,
                labels.get(m.model, m.model),
                f"{flops / 1e12:,.0f}",
                f"{100 * flops / peak_flops:.0f}%",
                f"{bandwidth / 1e9:,.0f}",
                f"{100 * bandwidth / peak_bw:.0f}%",
            ]
        )
    header = ["input", "model", "prefill TFLOP/s", "of peak", "decode GB/s", "of peak"]
    intro = [
        f"Device peak from the table for **{name}**: {peak_flops / 1e12:,.0f} TFLOP/s dense bf16, "
        f"{peak_bw / 1e12:.2f} TB/s. Prefill FLOP/s counts the LLM only (2 FLOPs per weight per token plus causal "
        "attention) over TTFT minus vision time; decode bytes/s counts LLM weights, LM head and KV cache read "
        "per token.",
        "",
    ]
    return intro + _table(header, rows)


# ---- findings ------------------------------------------------------------------------------------------
def findings(result: BenchResult) -> list[str]:
    """Statements about NVILA's scale-then-compress, each backed by numbers of this run."""
    labels = _labels(result)
    refs = [r for r in REFERENCES if any(m.model == r for m in result.measurements)]
    out: list[str] = []
    for model in NVILA_MODELS:
        rows = [m for m in result.measurements if m.model == model and m.ok]
        for kind in ("image", "video"):
            for ref in refs:
                wins, losses = [], []
                for m in (m for m in ordered(result, kind) if m in rows):
                    r = ratio(result, m, ref, _ttft)
                    t = ratio(result, m, ref, _tokens)
                    if r is None or t is None:
                        continue
                    entry = f"{m.case} ({t:.2f}x tokens, {r:.2f}x TTFT)"
                    (wins if r < 1 else losses).append(entry)
                if not wins and not losses:
                    continue
                name, peer = labels.get(model, model), labels.get(ref, ref)
                parts = []
                if wins:
                    parts.append(f"faster to first token on {', '.join(wins)}")
                if losses:
                    parts.append(f"slower on {', '.join(losses)}")
                out.append(f"- **{name} vs {peer}, {kind}s**: " + "; ".join(parts) + ".")
    low, native = result.find("nvila", "448x448"), result.find("qwen2-vl", "448x448")
    if low is not None and low.ok:
        tiles = low.tower_patches // 1024
        line = (
            f"- **The cost of Dynamic-S2 at low resolution**: a 448x448 image still goes through {tiles} tower tiles "
            f"({low.tower_patches:,} patches, at the 448, 896 and 1344 px scales) and becomes {low.visual_tokens:,} "
            "visual tokens, because the largest scale is always cut into at least 3x3 tiles"
        )
        if native is not None and native.ok:
            line += (
                f"; Qwen2-VL reads the same image as {native.tower_patches:,} patches and {native.visual_tokens:,} "
                f"tokens, and its TTFT is {_ttft(low) / _ttft(native):.1f}x shorter here"
            )
        out.append(line + ".")
    return out


MECHANISM = """\
NVILA's recipe is *scale, then compress*: look at an image at several scales (Dynamic-S2: 448 px, 896 px and an
aspect-matched grid of 9 to 12 tiles of 448 px at the top scale), then compress every 2x2 group of patch features
into one token; for video, look at more frames and average the token maps of every 8 consecutive frames
(NVILA-8B-Video). Two consequences follow from the geometry alone, on any hardware:

- *The token count is bounded, with a floor.* Any single image costs NVILA 2,304 to 3,072 tokens (9 to 12 tiles of
  256), while a native-resolution model (Qwen2-VL) grows with the pixel count and LLaVA-OneVision's anyres grid
  grows up to its 9-tile cap. So at high resolution NVILA spends fewer tokens per pixel, and at low resolution more:
  a 448x448 image still becomes 2,304 tokens (Qwen2-VL and InternVL: 256). NVILA-Lite (tiling, 3x3 projector,
  121 tokens per tile) has no such floor.
- *Compression happens after the tower.* Every tile of every scale goes through the vision tower (1 + 4 + 9 to 12
  = 14 to 17 tiles per image, against 1 to 13 tiles for tiling models); only the LLM sees fewer tokens. Temporal
  pooling likewise saves LLM tokens, not tower passes: each frame still costs one tower pass.

Whether fewer LLM tokens buy a shorter time to first token depends on how the tower's cost compares with the LLM
prefill's. That balance is what the measurements below show, for this size and this machine.
"""


def winners_table(result: BenchResult) -> list[str]:
    """Per case: the model with the fewest visual tokens, the fastest TTFT, and where NVILA's models rank."""
    labels = _labels(result)
    present = [n for n in NVILA_MODELS if any(m.model == n for m in result.measurements)]
    header = ["input", "fewest visual tokens", "fastest TTFT", *[f"{labels.get(n, n)} TTFT rank" for n in present]]
    rows = []
    for case in dict.fromkeys(m.case for m in ordered(result)):
        runs = [m for m in result.measurements if m.case == case and m.ok]
        if not runs:
            continue
        fewest = min(runs, key=_tokens)
        fastest = sorted(runs, key=_ttft)
        row = [case, f"{labels.get(fewest.model, fewest.model)} ({fewest.visual_tokens:,})"]
        row.append(f"{labels.get(fastest[0].model, fastest[0].model)} ({_ttft(fastest[0]):,.0f} ms)")
        for name in present:
            rank = next((k + 1 for k, m in enumerate(fastest) if m.model == name), None)
            row.append("-" if rank is None else f"{rank} of {len(fastest)}")
        rows.append(row)
    return _table(header, rows)


def vision_shares(result: BenchResult) -> list[str]:
    """A bullet per kind: the visual path's share of TTFT for each model on the largest input."""
    labels = _labels(result)
    out = []
    for kind in ("image", "video"):
        runs = [m for m in ordered(result, kind) if m.ok]
        if not runs:
            continue
        last = runs[-1].case
        shares = [
            f"{labels.get(m.model, m.model)} {100 * min(1.0, _vision(m) / _ttft(m)):.0f}%"
            for m in runs
            if m.case == last and _ttft(m) > 0
        ]
        out.append(f"- **Vision share of TTFT on {last}** (vision ms / TTFT ms, medians): {', '.join(shares)}.")
    return out


# ---- plots ---------------------------------------------------------------------------------------------
def _series(result: BenchResult, kind: str, metric: Callable[[Measurement], float]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for m in result.measurements:
        if m.kind != kind or not m.ok:
            continue
        x = m.width * m.height / 1e6 if kind == "image" else m.frames
        out.setdefault(m.model, []).append((x, metric(m), m.case))
    return out


STYLE = {
    "nvila": ("#76b900", "o", "-"),
    "nvila-lite": ("#2f6f00", "s", "-"),
    "nvila-lite-w8a8": ("#2f6f00", "P", ":"),
    "qwen2-vl": ("#6a3d9a", "^", "--"),
    "llava-onevision": ("#e6550d", "v", "--"),
    "internvl": ("#3182bd", "D", "--"),
}


def plot(
    result: BenchResult, kind: str, metric: Callable[[Measurement], float], ylabel: str, title: str, path: Path
) -> Path | None:
    """A line plot of `metric` against megapixels (images) or frames (videos), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    series = _series(result, kind, metric)
    if not series:
        return None
    labels = _labels(result)
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=120)
    for model, points in series.items():
        points.sort()
        color, marker, line = STYLE.get(model, (None, "o", "-"))
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker=marker,
            linestyle=line,
            color=color,
            label=labels.get(model, model),
            linewidth=2.2 if model in NVILA_MODELS else 1.5,
        )
    ticks = sorted({(p[0], p[2]) for points in series.values() for p in points})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([t[0] for t in ticks])
    ax.set_xticklabels([t[1] if kind == "video" else f"{t[1]}\n{t[0]:.2f} MP" for t in ticks], fontsize=8)
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("image size" if kind == "image" else "sampled frames")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


# ---- the report ----------------------------------------------------------------------------------------
def render(result: BenchResult, plots: dict[str, Path], out: Path, command: str = "") -> str:
    """The markdown text; `plots` maps plot names to files (linked relative to `out`)."""
    s, mc = result.settings, result.machine
    lines = ["# Performance: NVILA's visual pipeline against peer VLMs", ""]
    merged = s.get("merged_runs", [])
    extra = "".join(f", then `{run['command']}` (merged)" for run in merged)
    lines += [
        f"Generated by `{command or 'nvila bench'}`{extra}. All models have **random weights** and the **same Qwen2 "
        "text config**, so only the visual path (image processing geometry, vision tower, projector, token count) "
        "differs. Ratios compare models measured in the same run, on this machine.",
        "",
        "## Machine",
        "",
    ]
    threads = mc["torch_threads"]
    device = mc["device_name"] + (f" ({mc['device_memory_gb']} GB)" if "device_memory_gb" in mc else "")
    machine_rows = [
        ["CPU", f"{mc['cpu']}, {mc['cpu_cores']} cores ({threads} torch thread{'s' * (threads != 1)})"],
        ["device", device],
        ["software", f"torch {mc['torch']}, transformers {mc['transformers']}, Python {mc['python']}"],
        ["OS", mc["os"]],
    ]
    load = mc.get("load_average") or []
    if len(load) == 2 and None not in load:
        shared = max(load) - threads > (mc["cpu_cores"] or 1) * 0.5  # beyond the run's own threads
        machine_rows.append(
            [
                "load",
                f"1-min load average {load[0]} at the start, {load[1]} at the end"
                + ("; other processes shared the CPU during the run, which the spreads show" if shared else ""),
            ]
        )
    lines += _table(["", ""], machine_rows) + [""]
    text = s["text_config"]
    lines += [
        "## Setup",
        "",
        f"- Size **{s['size']}**, {s['dtype']}; {_runs(s['repeats'], s.get('warmup', True))}; "
        f"values are *median (min-max)*; decode measured over {s['decode_tokens']} tokens after the first"
        + (
            "; the repeats of each case take turns between the models, so outside load falls on all of them alike."
            if s.get("interleaved")
            else "; one model in memory at a time."
        ),
        f"- Shared LLM (every model): Qwen2, hidden {text['hidden_size']}, {text['num_hidden_layers']} layers, "
        f"{text['num_attention_heads']} query / {text['num_key_value_heads']} KV heads, "
        f"FFN {text['intermediate_size']}, vocabulary {text['vocab_size']:,}.",
        "- Images: a random image of each size through each model's own image processor and prompt expansion. "
        f"Videos: frames of a {s['video_frame_size'][0]}x{s['video_frame_size'][1]} source at the shapes each "
        "model's video processor produces (torchvision, which those processors need, is not installed).",
        "- *visual tokens*: LLM positions filled by visual features (= the prompt's placeholders, checked against the "
        "model's feature count; LLaVA-OneVision's count includes its newline embeddings). *tower patches*: patch "
        "tokens through the vision tower. *vision ms*: time in the tower and projector within the TTFT run. *TTFT*: "
        "preprocessed inputs to the first token (vision + prefill). *peak MB*: memory above the loaded model during "
        "TTFT + decode.",
    ]
    if any(m.same_as for m in result.measurements):
        lines.append(
            "- *input (= other)*: this case's inputs had exactly the shapes of the other case's (the same tiles, "
            "tokens and prompt), so its row repeats that measurement instead of timing identical work again."
        )
    if s["size"] == "2b":
        lines.append(
            "- The real towers and a Qwen2.5-1.5B-sized LLM: the balance of tower and LLM cost is the released 2B "
            "models'; the absolute times are this CPU's, in float32."
        )
    elif s["size"] not in REAL_WIDTH_SIZES:
        lines.append(
            "- At this size every tower has the same narrow width and depth, so tower time follows patch counts and "
            "attention lengths, not the real towers' widths; the LLM is narrow too, so absolute times and the "
            "vision/LLM split are not those of the released models. Token counts are the real ones. The LLM has as "
            "many KV heads as query heads here: CPU torch's attention kernel is far slower with grouped KV heads at "
            "these widths, which would swamp the decode numbers."
        )
    lines += [f"- {note}" for note in result.notes]
    lines += [merged_run_note(run, mc["cpu_cores"]) for run in merged]
    lines += ["", *model_table(result), ""]
    for kind, title in (("image", "Images"), ("video", "Videos")):
        if not any(m.kind == kind for m in result.measurements):
            continue
        lines += [f"## {title}", "", *case_table(result, kind), ""]
        for name in (f"tokens_{kind}", f"ttft_{kind}"):
            if name in plots:
                rel = os.path.relpath(plots[name], out.parent)
                lines += [f"![{name}]({Path(rel).as_posix()})", ""]
    if any(m.model in NVILA_MODELS for m in result.measurements):
        lines += ["## NVILA against the peers", "", *nvila_ratio_table(result), ""]
    peak = peak_table(result)
    if peak:
        lines += ["## Fraction of the device's peak", "", *peak, ""]
    lines += ["## Where scale-then-compress holds, and where it does not", "", MECHANISM]
    lines += ["Measured in this run:", "", *winners_table(result), "", *findings(result), *vision_shares(result)]
    if s["size"] not in REAL_WIDTH_SIZES:
        lines.append(
            f"- **Caveat of the {s['size']} size**: narrow towers make attention over long patch sequences dominate "
            "tower time, and the narrow LLM makes prefill cheap relative to the tower, so the vision share of TTFT "
            "is not the released models'. Token counts and the scaling with resolution and frames carry over; the "
            "absolute balance needs `--size full` on a GPU."
        )
    lines.append("")
    return "\n".join(lines)


def _runs(repeats: int, warmup: bool) -> str:
    return f"{repeats} timed run{'s' * (repeats != 1)}" + (" after one warm-up" if warmup else ", no warm-up")


def merged_run_note(run: dict, cpu_cores: int | None) -> str:
    """A Setup bullet for a run of extra cases merged into the report (`runner.merge_results`)."""
    threads = run.get("torch_threads")
    line = (
        f"- {', '.join(run['cases'])}: measured in a separate run of the same models (`{run['command']}`), "
        f"{_runs(run['repeats'], run.get('warmup', True))}"
        + (f", {threads} torch thread{'s' * (threads != 1)}" if threads else "")
        + "; the ratios on these cases compare models of that run"
    )
    load = run.get("load_average") or []
    if len(load) == 2 and None not in load:
        line += f"; 1-min load average {load[0]} at its start, {load[1]} at its end"
        if max(load) > (cpu_cores or 1) * 0.5:
            line += " (other processes shared the CPU, which the spreads show)"
    return line + "."


def write_report(result: BenchResult, out: Path, command: str = "") -> list[Path]:
    """Write `out` (markdown) and its plots in the folder `out` without suffix; returns the written files."""
    out = Path(out)
    folder = out.with_suffix("")
    specs = {
        "tokens_image": ("image", _tokens, "visual tokens", "Visual tokens vs image size", "tokens_vs_resolution.png"),
        "ttft_image": ("image", _ttft, "TTFT (ms)", "Time to first token vs image size", "ttft_vs_resolution.png"),
        "tokens_video": ("video", _tokens, "visual tokens", "Visual tokens vs video frames", "tokens_vs_frames.png"),
        "ttft_video": ("video", _ttft, "TTFT (ms)", "Time to first token vs video frames", "ttft_vs_frames.png"),
    }
    plots: dict[str, Path] = {}
    for name, (kind, metric, ylabel, title, filename) in specs.items():
        written = plot(result, kind, metric, ylabel, f"{title} ({result.settings['size']} size)", folder / filename)
        if written is not None:
            plots[name] = written
    markdown = render(result, plots, out, command)
    atomic_write_text(out, markdown)
    return [out, *plots.values()]


def summary_text(result: BenchResult) -> str:
    """Plain-text lines for the terminal: visual tokens and TTFT per case and model, with ratios to Qwen2-VL."""
    labels = _labels(result)
    ref = REFERENCES[0]
    ref_label = labels.get(ref, ref)
    head = f"{'input':<12} {'model':<16} {'tokens':>8} {'TTFT ms':>10}"
    lines = [f"{head} {'tokens vs ' + ref_label:>18} {'TTFT vs ' + ref_label:>16}"]
    for m in ordered(result):
        if not m.ok:
            lines.append(f"{m.case:<12} {labels.get(m.model, m.model):<16} {m.error or 'not run'}")
            continue
        lines.append(
            f"{m.case:<12} {labels.get(m.model, m.model):<16} {m.visual_tokens:>8,} {median(m.ttft_ms):>10,.0f} "
            f"{fmt_ratio(ratio(result, m, ref, _tokens)):>18} {fmt_ratio(ratio(result, m, ref, _ttft)):>16}"
        )
    if not any(m.model == ref for m in result.measurements):
        lines.append(f"({ref_label} was not measured in this run: no ratios)")
    return "\n".join(lines)
