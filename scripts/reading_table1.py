"""Table 1 on reading (docs/results.md): resize vs Dynamic-S2 vs scale-up, 2x2 vs 3x3 compression.

    python scripts/reading_table1.py                          # every arm, one after the other (~2 h on one core)
    python scripts/reading_table1.py --arms up-2x2 &          # or split the arms over the cores,
    python scripts/reading_table1.py --arms up-3x3,s2-2x2,s2-3x3,resize; wait
    python scripts/reading_table1.py                          # then once more: the table and the plot

Every arm is one `scripts/reading_pilot.py` run from the same start (`--model`'s tower and LLM, a fresh projector
of the arm's compression, the same seed), the same steps of the same questions (every line's first word, the
title, the line count; 8 a conversation, 64 a step) with the word loss; only the tokens a page differ. A finished
arm's log (`--runs`/t1-ARM.log) is kept, so a rerun only draws the table and the plot: the markdown table on
stdout, docs/results/reading_table1.json and .png (fresh-page accuracy per question kind against tokens a page).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nvila.assets import DEFAULT_MODEL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PILOT = ROOT / "scripts" / "reading_pilot.py"
OUT = ROOT / "docs" / "results"
COMMON = ["--word-loss", "1", "--questions", "first,title,lines", "--turns", "8", "--batch", "64"]
COMMON += ["--eval-every", "500"]
#: arm -> (label, its reading_pilot.py options)
ARMS = {
    "resize": ("one 64 px tile (resize)", ["--projector", "2x2", "--resize", "--scales", "64,128,192"]),
    "s2-3x3": ("Dynamic-S2 64/128/192, 3x3", ["--projector", "3x3", "--scales", "64,128,192"]),
    "s2-2x2": ("Dynamic-S2 64/128/192, 2x2", ["--projector", "2x2", "--scales", "64,128,192"]),
    "up-3x3": ("Dynamic-S2 64/192/384, 3x3", ["--projector", "3x3", "--scales", "64,192,384"]),
    "up-2x2": ("Dynamic-S2 64/192/384, 2x2", ["--projector", "2x2", "--scales", "64,192,384"]),
}
KINDS = {"first": "first word of a line", "title": "title", "lines": "line count"}
REPORT = re.compile(r"step (\d+) loss ([\d.]+) word loss ([\d.]+) \| train: (.*) \| fresh: (.*) \| (\d+) s")
GEOMETRY = re.compile(r"(\d+) image tokens a page \((\d+) x (\d+)\); on the fresh pages ([\d.]+)% .* ([\d.]+)% of")


def scores(text: str) -> dict[str, float]:
    """'first 1.0%, title 0.0%' -> {'first': 0.01, 'title': 0.0}."""
    return {k: float(v) / 100 for k, v in re.findall(r"(\S+) ([\d.]+)%", text)}


def last_report(log: Path) -> dict | None:
    """The final report of a pilot log, or None while the run has not reported."""
    found = REPORT.findall(log.read_text()) if log.is_file() else []
    if not found:
        return None
    step, loss, word, train, fresh, wall = found[-1]
    return {
        "steps": int(step),
        "loss": float(loss),
        "word_loss": float(word),
        "train": scores(train),
        "fresh": scores(fresh),
        "wall_s": int(wall),
    }


def pilot(options: list[str], log: Path) -> None:
    with log.open("w") as out:
        subprocess.run([sys.executable, str(PILOT), *options], check=True, cwd=ROOT, stdout=out, stderr=out)


def geometry(arm: str, runs: Path, test_pages: int) -> dict:
    """Tokens a page and how often they cannot tell lines apart: from the arm's training log, which reports them
    first, or else from a `reading_pilot.py --steps 0` run."""
    found = None
    for log in (runs / f"t1-{arm}.log", runs / f"t1-{arm}.geometry.log"):
        found = found or (GEOMETRY.search(log.read_text()) if log.is_file() else None)
    if found is None:
        log = runs / f"t1-{arm}.geometry.log"
        pilot([*ARMS[arm][1], "--steps", "0", "--test-pages", str(test_pages)], log)
        found = GEOMETRY.search(log.read_text())
    tokens, rows, cols, firsts, words = found.groups()
    return {"tokens": int(tokens), "raster": f"{rows} x {cols}", "shared_first": float(firsts) / 100}


def plot(rows: list[dict], path: Path) -> None:
    """Fresh-page accuracy per question kind (left) and the word loss (right) against tokens a page."""
    order = sorted(rows, key=lambda r: r["tokens"])
    tokens = [r["tokens"] for r in order]
    fig, (answers, words) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind, label in KINDS.items():
        answers.plot(tokens, [100 * r["fresh"].get(kind, 0.0) for r in order], "o-", label=label)
    answers.set_ylabel("fresh pages, exact answers (%)")
    answers.legend(fontsize=8)
    words.plot(tokens, [r["word_loss"] for r in order], "o-", color="#c44e52")
    words.set_ylabel("word loss (each word named at its token)")
    for ax in (answers, words):
        ax.set_xscale("log")
        ax.set_xticks(tokens, [f"{r['tokens']}\n{r['arm']}" for r in order], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("visual tokens per 192 px page")
    fig.suptitle("Table 1 on reading: equal steps from the same start")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default=",".join(ARMS), help="arms to run, comma-separated (default: all)")
    p.add_argument("--steps", type=int, default=1500, help="steps per arm (default: 1500)")
    p.add_argument("--pages", type=int, default=1000, help="training pages per arm (default: 1000)")
    p.add_argument("--test-pages", type=int, default=150, help="fresh pages scored (default: 150)")
    p.add_argument(
        "--model",
        default=str(DEFAULT_MODEL),
        help="the tower and LLM every arm starts from (default: the shipped model; docs/results.md's table started"
        " from stage 12's, runs/small/12_replay_sft/model)",
    )
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "reading-table1", help="where the arms' logs go")
    p.add_argument("--out", type=Path, default=OUT, help="where reading_table1.json and .png go")
    args = p.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        p.error(f"unknown arms {unknown}: choose from {', '.join(ARMS)}")
    args.runs.mkdir(parents=True, exist_ok=True)
    for arm in arms:
        log = args.runs / f"t1-{arm}.log"
        report = last_report(log)
        if report is None or report["steps"] < args.steps:
            print(f"training {arm} ({args.steps} steps) -> {log}", flush=True)
            sizes = ["--pages", str(args.pages), "--test-pages", str(args.test_pages)]
            pilot([*COMMON, *sizes, "--model", args.model, "--steps", str(args.steps), *ARMS[arm][1]], log)
    rows = []
    for arm, (label, _) in ARMS.items():
        report = last_report(args.runs / f"t1-{arm}.log")
        if report is None or report["steps"] < args.steps:
            continue  # another process is still training it
        rows.append({"arm": arm, "label": label, **geometry(arm, args.runs, args.test_pages), **report})
    if len(rows) < len(ARMS):
        print(f"{len(rows)} of {len(ARMS)} arms done; rerun when the others are", flush=True)
        return
    print("| arm | tokens a page | first words sharing a token | first word | title | line count | word loss | wall |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fresh = " | ".join(f"{r['fresh'].get(kind, 0.0):.1%}" for kind in KINDS)
        print(
            f"| {r['label']} | {r['tokens']} ({r['raster']}) | {r['shared_first']:.1%} | {fresh} | "
            f"{r['word_loss']:.2f} | {r['wall_s'] / 60:.0f} min |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reading_table1.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, args.out / "reading_table1.png")
    print(f"wrote {args.out / 'reading_table1.json'} and reading_table1.png", flush=True)


if __name__ == "__main__":
    main()
