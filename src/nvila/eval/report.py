"""Reports of evaluation results: report.md with a bar plot of per-task scores, and side-by-side comparisons.

Owns: the Markdown tables, the plots (matplotlib, drawn off-screen with the Agg canvas; without matplotlib
the report is written without its plot and a warning says so) and reading result folders back for
`nvila eval --compare`. Does not own scoring or the summary's numbers (`runner`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from nvila.errors import ConfigError
from nvila.json_io import read_json

log = logging.getLogger(__name__)

REPORT, PLOT = "report.md", "scores.png"
COMPARE_REPORT, COMPARE_PLOT = "compare.md", "compare.png"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def task_rows(summary: dict) -> list[tuple[str, float, int, int]]:
    """(name, score, count, no_answer): "all" first, then each sub-task."""
    rows = [("all", summary["score"], summary["count"], summary["no_answer"])]
    rows += [(name, t["score"], t["count"], t["no_answer"]) for name, t in summary.get("tasks", {}).items()]
    return rows


# ---- one run ----------------------------------------------------------------------------------------------
def write_report(summary: dict, out: Path) -> Path:
    """Write report.md (and scores.png) for a summary into `out`; returns the report's path."""
    baseline = summary.get("majority_baseline") or {}
    lines = [
        f"# {summary['benchmark']}: {summary['description']}",
        "",
        f"Model `{summary['model']}` on `{summary['data']}`, {summary['count']} samples, metric "
        f"{summary['metric']} (scores in %). Finished {summary['finished']}.",
        "",
        "| task | score |" + (" majority baseline |" if baseline else "") + " samples | no answer |",
        "|---|---:|" + ("---:|" if baseline else "") + "---:|---:|",
    ]
    for name, score, count, no_answer in task_rows(summary):
        base = f" {_pct(baseline.get(name))} |" if baseline else ""
        lines.append(f"| {name} | {_pct(score)} |{base} {count} | {no_answer} |")
    if summary.get("macro_score") is not None:
        lines += ["", f"Mean over tasks: {_pct(summary['macro_score'])}."]
    if baseline:
        lines += [
            "",
            "Majority baseline: the most common train answer of each question template, scored by exact match "
            "(localization answers too, where the model is scored by IoU).",
        ]
    if loc := summary.get("localization"):
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in loc.items() if k != "count")
        lines += ["", f"Localization ({loc['count']} questions): {metrics}."]
    if templates := summary.get("templates"):
        lines += ["", "| template | score | samples | no answer |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {_pct(t['score'])} | {t['count']} | {t['no_answer']} |" for k, t in templates.items()]
    names = [row[0] for row in task_rows(summary)]
    series = {"model": [row[1] for row in task_rows(summary)]}
    if baseline:
        series["majority baseline"] = [baseline.get(n) for n in names]
    if _bar_plot(out / PLOT, names, series, f"{summary['benchmark']} ({summary['metric']})"):
        lines += ["", f"![scores]({PLOT})"]
    settings = summary.get("settings", {})
    shown = ["batch_size", "max_new_tokens", "limit"]
    video = {"frame_sampling": "centres", "video_timestamps": False}  # shown when not these defaults
    shown += [k for k, default in video.items() if settings.get(k, default) != default]
    lines += ["", "Settings: " + ", ".join(f"{k}={settings.get(k)}" for k in shown), ""]
    path = out / REPORT
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _bar_plot(path: Path, names: list[str], series: dict[str, list[float | None]], title: str) -> bool:
    """Grouped bars (one group per name, one bar per series) saved as a PNG; False without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: %s is written without its plot (pip install matplotlib)", path.name)
        return False
    fig = Figure(figsize=(max(4.0, min(14.0, 1.0 + 0.5 * len(names) * len(series))), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
        heights = [100 * v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=label)
        ax.bar_label(bars, labels=[_pct(v) for v in values], fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    return True


# ---- two runs ----------------------------------------------------------------------------------------------
def load_summary(folder: str | Path) -> dict:
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{folder} is not an evaluation result folder: no summary.json")
    return read_json(path, ConfigError, want=dict)


def compare(a: str | Path, b: str | Path, out: str | Path) -> str:
    """Side-by-side table of two result folders (printed by the CLI); writes compare.md and compare.png to `out`."""
    sa, sb = load_summary(a), load_summary(b)
    if sa["benchmark"] != sb["benchmark"]:
        log.warning("comparing different benchmarks: %s and %s", sa["benchmark"], sb["benchmark"])
    hash_a, hash_b = (s.get("dataset", {}).get("content_hash") for s in (sa, sb))
    if hash_a != hash_b:
        log.warning(
            "the two runs used different data (content hash %s vs %s): scores are not comparable", hash_a, hash_b
        )
    if sa["count"] != sb["count"]:
        log.warning("the two runs scored different numbers of samples (%d vs %d)", sa["count"], sb["count"])
    ra = {name: (score, count) for name, score, count, _ in task_rows(sa)}
    rb = {name: (score, count) for name, score, count, _ in task_rows(sb)}
    names = list(dict.fromkeys([*ra, *rb]))
    baseline = sa.get("majority_baseline") or sb.get("majority_baseline") or {}
    label_a, label_b = _label(a, sa), _label(b, sb)
    header = ["task", f"A {label_a}", f"B {label_b}", "B - A", "samples A/B"] + (["majority"] if baseline else [])
    rows = []
    for name in names:
        score_a, count_a = ra.get(name, (None, 0))
        score_b, count_b = rb.get(name, (None, 0))
        delta = f"{100 * (score_b - score_a):+.1f}" if score_a is not None and score_b is not None else "–"
        row = [name, _pct(score_a), _pct(score_b), delta, f"{count_a}/{count_b}"]
        rows.append(row + ([_pct(baseline.get(name))] if baseline else []))
    table = _text_table(header, rows)
    title = f"{sa['benchmark']}: A = {sa['model']}, B = {sb['model']} ({sa['metric']}, %)"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series = {
        f"A {label_a}": [ra.get(n, (None,))[0] for n in names],
        f"B {label_b}": [rb.get(n, (None,))[0] for n in names],
    }
    if baseline:
        series["majority baseline"] = [baseline.get(n) for n in names]
    md = [f"# {title}", "", f"A: `{a}`  ", f"B: `{b}`", "", "```", table, "```", ""]
    if _bar_plot(out / COMPARE_PLOT, names, series, f"{sa['benchmark']} ({sa['metric']})"):
        md += [f"![comparison]({COMPARE_PLOT})", ""]
    (out / COMPARE_REPORT).write_text("\n".join(md), encoding="utf-8")
    return f"{title}\n{table}"


def _label(folder: str | Path, summary: dict) -> str:
    """A short name for a run: its folder name, or the model's when the folder is named after the benchmark."""
    name = Path(folder).resolve().name
    return Path(summary["model"]).name if name == summary["benchmark"] else name


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]

    def line(row: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])
