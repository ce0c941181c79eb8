"""Train and measure the small-scale analogues of the paper's Table 1 and Table 2 (docs/results.md).

    python scripts/results_tables.py            # after scripts/train_small_model.sh; resumable

Table 1 (documents, `recipes/results/t1_*.yaml`): the page downscaled to one tile vs Dynamic-S2 with 2x2
compression vs Dynamic-S2 with 3x3 compression. Table 2 (video events, `recipes/results/t2_*.yaml`): 8 vs 32
frames vs 32 frames with 4x temporal pooling. Every arm starts from the stage-7 model (runs/small/7_long_sft,
the shipped model when the tables were made) and fine-tunes the same number of steps; each is scored on the
held-out split of its task (data/synth-small). The shipped model itself is scored on the whole held-out suite.
Prints the markdown tables and writes docs/results/results.json, one plot per table (docs/results/table1.png,
table2.png) and the training losses (docs/results/training_loss.png).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nvila.checkpoint import config_from_official  # noqa: E402
from nvila.eval.runner import model_files  # noqa: E402
from nvila.models.nvila.geometry import image_tokens, video_tokens  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NVILA = str(Path(sys.executable).parent / "nvila")
HELDOUT = ROOT / "data/synth-small"  # its held-out split is the benchmark
#: the model of stages 1-12 (shipped until session 15): the tables' "shipped" column (docs/results.md)
STAGE_12 = ROOT / "runs/small/12_replay_sft/model"
TRAIN_MQ = ROOT / "data/synth-small-mq"
RUNS = ROOT / "runs/results"
OUT = ROOT / "docs/results"
PAGE = (192, 192)  # px, the suite's image size
TABLES = {
    "table1": ("documents", ["t1_resize", "t1_s2_2x2", "t1_s2_3x3"]),
    "table2": ("events", ["t2_frames8", "t2_frames32", "t2_frames32_pool4"]),
}
LABELS = {
    "t1_resize": "one tile (resize)",
    "t1_s2_2x2": "Dynamic-S2, 2x2",
    "t1_s2_3x3": "Dynamic-S2, 3x3",
    "t2_frames8": "8 frames",
    "t2_frames32": "32 frames",
    "t2_frames32_pool4": "32 frames, 4x pooling",
}


def run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT)


def prepare() -> None:
    """Per-task training records (second synth set) and per-task held-out folders (first set's media)."""
    documents = TRAIN_MQ / "documents.jsonl"
    if not documents.is_file():
        lines = (TRAIN_MQ / "images.jsonl").read_text().splitlines()
        documents.write_text("\n".join(x for x in lines if json.loads(x)["source"] == "documents") + "\n")
    for task in ("documents", "events"):
        folder = RUNS / f"heldout-{task}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = (HELDOUT / "heldout.jsonl").read_text().splitlines()
        (folder / "heldout.jsonl").write_text("\n".join(x for x in lines if json.loads(x)["source"] == task) + "\n")
        for media in ("images", "videos"):
            if not (folder / media).exists():
                (folder / media).symlink_to(HELDOUT / media)


def train_and_score(arm: str, task: str) -> dict:
    """Fine-tune one arm (resumable) and score it on its task's held-out records."""
    out = RUNS / arm
    wall = out / "wall.json"
    if not (out / "model" / "config.json").is_file():
        start = time.time()
        resume = ["--resume"] if (out / "state").exists() else []
        run(NVILA, "train", "--recipe", f"recipes/results/{arm}.yaml", *resume)
        wall.write_text(json.dumps({"train_s": round(time.time() - start)}))
    run(NVILA, "eval", "--model", str(out / "model"), "--benchmark", "synth", "--data", str(RUNS / f"heldout-{task}"),
        "--out", str(out / "eval"), "--no-progress")  # fmt: skip
    summary = json.loads((out / "eval" / "summary.json").read_text())
    cfg = config_from_official(out / "model")
    if task == "documents":
        t = image_tokens(*PAGE, cfg)
        tokens, tower_passes = t.llm_tokens, t.vit_tiles
    else:
        v = video_tokens(cfg.num_video_frames, cfg)
        tokens, tower_passes = v.llm_tokens, v.vit_tiles
    return {
        "arm": arm,
        "label": LABELS[arm],
        "score": summary["tasks"][task]["score"],
        "count": summary["tasks"][task]["count"],
        "templates": {k: v["score"] for k, v in summary["templates"].items()},
        "tokens": tokens,
        "tower_passes": tower_passes,
        "train_s": json.loads(wall.read_text())["train_s"] if wall.is_file() else None,
    }


def plot(name: str, task: str, rows: list[dict], baseline: float) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bars = ax.bar([r["label"] for r in rows], [100 * r["score"] for r in rows], color="#4c72b0")
    ax.axhline(100 * baseline, color="grey", linestyle="--", label=f"majority answer ({100 * baseline:.1f}%)")
    for bar, row in zip(bars, rows):
        ax.annotate(f"{row['tokens']} tok", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=9)  # fmt: skip
    ax.set_ylabel(f"held-out {task} accuracy (%)")
    ax.set_title(f"{name}: {task}, equal fine-tuning steps from the stage-7 model")
    ax.set_ylim(0, 1.2 * max(100 * r["score"] for r in rows))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=120)
    plt.close(fig)


def plot_training(stages: Path = ROOT / "runs/small") -> None:
    """The shipped model's loss per step, one panel per stage (stage 2 is the tower-heads loss)."""
    runs = sorted((p.parent for p in stages.glob("*/losses.jsonl")), key=lambda d: int(d.name.split("_")[0]))
    n_cols = min(6, len(runs))
    n_rows = -(-len(runs) // n_cols)
    fig, grid = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.6 * n_rows), squeeze=False)
    axes = grid.flatten()
    for ax in axes[len(runs) :]:
        ax.axis("off")
    for ax, run_dir in zip(axes, runs):
        rows = [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]
        steps, losses = [r["step"] for r in rows], [r["loss"] for r in rows]
        window = max(1, len(rows) // 20)
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
                  for i in range(len(losses))]  # fmt: skip
        ax.plot(steps, losses, color="#c0c0c0", linewidth=0.6)
        ax.plot(steps, smooth, color="#4c72b0")
        ax.set_title(run_dir.name.replace("_", " "), fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in grid[:, 0]:
        ax.set_ylabel("training loss")
    fig.tight_layout()
    fig.savefig(OUT / "training_loss.png", dpi=120)
    plt.close(fig)


def main() -> None:
    prepare()
    OUT.mkdir(parents=True, exist_ok=True)
    plot_training()
    baselines = json.loads((HELDOUT / "manifest.json").read_text())["majority_baseline"]["heldout"]
    shipped = RUNS / f"shipped-{model_files(STAGE_12)[-8:]}"  # a new model gets a new folder
    run(NVILA, "eval", "--model", str(STAGE_12), "--benchmark", "synth", "--data", str(HELDOUT),
        "--out", str(shipped), "--no-progress")  # fmt: skip
    results = {"baselines": baselines, "shipped": json.loads((shipped / "summary.json").read_text())}
    for name, (task, arms) in TABLES.items():
        rows = [train_and_score(arm, task) for arm in arms]
        results[name] = rows
        plot(name, task, rows, baselines[task])
        print(f"\n{name} ({task}; majority answer {100 * baselines[task]:.1f}%)")
        print("| arm | visual tokens | tower passes | accuracy | questions | fine-tune wall (s) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['label']} | {r['tokens']} | {r['tower_passes']} | {100 * r['score']:.1f}% | {r['count']} | "
                  f"{r['train_s']} |")  # fmt: skip
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
