"""Training throughput with padded batches against packed rows: real (non-pad) tokens/s and samples/s.

    python benchmarks/packing.py                                   # a small `nvila synth` set in a temp dir
    python benchmarks/packing.py --data data/synth-small/images.yaml --rounds 4 --lengths 512,1024,2048

Model: the `tiny` preset with the overrides of recipes/small/1_projector_init.yaml (64 px tiles, patch 8,
a Qwen2-shaped LLM 128 wide x 4 layers), the shipped small model's tokenizer, trained as that recipe trains
it (projector + LLM, AdamW). One model, one sample order: step k of every arm trains on the same
`--micro-batch` samples, as
- padded: one sample per row, right-padded to the longest (with an attention mask);
- packed L: first-fit rows of at most L tokens (`pack_greedy`), each sample its own causal block.
Batches are collated before the clock starts; a step is forward, backward, clipping and the optimiser.
The arms take turns (A B C D, A B C D, ...) for `--rounds` rounds of `--steps` steps, so load from other
processes falls on all of them alike; the table gives medians over rounds and ratios to padded.

Real tokens are the samples' own tokens (text + visual), the same for every arm; the padding fraction is
the share of row positions holding padding. "attention" counts the query x key pairs each step's attention
computes (per layer and head): a packed row attends over its whole length behind a block-diagonal mask,
since there is no variable-length attention kernel on the CPU (and none wired in here on a GPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nvila.assets import DEFAULT_MODEL
from nvila.data.collate import TrainBatch, collate_packed, collate_padded, pack_greedy
from nvila.synth.writer import write_dataset
from nvila.train.objectives import LanguageModellingBatch
from nvila.train.recipe import load_recipe
from nvila.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "small" / "1_projector_init.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="records (.jsonl) or mixture (.yaml) (default: a new synth set)")
    parser.add_argument("--records", type=int, default=96, help="records per synth task when writing the data")
    parser.add_argument("--lengths", default="512,1024,2048", help="packed row lengths (comma-separated)")
    parser.add_argument("--micro-batch", type=int, default=16, help="samples per step (the recipe's: 16)")
    parser.add_argument("--steps", type=int, default=1, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A B C D")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [int(n) for n in args.lengths.split(",")]
    with tempfile.TemporaryDirectory(prefix="nvila-packing-") as tmp:
        data = args.data or write_synth(Path(tmp) / "synth", args.records)
        trainer = build_trainer(data, Path(tmp) / "run", args.micro_batch, min(lengths))
        arms = measure(trainer, lengths, args.micro_batch, args.steps, args.rounds)
    report(arms, args, data, torch.get_num_threads())


def write_synth(root: Path, records: int) -> Path:
    """A small image set like the shipped model's training data (192 px images, three tasks)."""
    counts = {"documents": records, "charts": records, "shapes": records}
    write_dataset(root, counts, seed=0, image_size=192, heldout=0.0, progress=False)
    return root / "train.jsonl"


class ChosenBatchTrainer(Trainer):
    """The recipe's `Trainer`; each step trains on `batch`, which the benchmark collated for the arm."""

    batch: TrainBatch | None = None

    def _micro_batches(self) -> list:
        return [LanguageModellingBatch(self.batch)]


def build_trainer(data: Path, out: Path, micro_batch: int, max_length: int):
    overrides = [
        f"output_dir={out}",
        f"data.train={data}",
        f"data.max_length={max_length}",  # longer samples are cut, so that every arm's rows hold every sample
        f"model.tokenizer={DEFAULT_MODEL / 'llm'}",
        f"micro_batch_size={micro_batch}",
        "max_steps=100000",  # a flat LR schedule: the step count does not matter here
        "device=cpu",
    ]
    trainer = ChosenBatchTrainer(load_recipe(RECIPE, overrides))
    trainer.setup()
    return trainer


@dataclass
class Arm:
    """One way of batching, and what its steps measured (lists: one value per step)."""

    name: str
    row_length: int | None  #: None: padded
    seconds: list[float] = field(default_factory=list)
    round_means: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    real_tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    pairs: list[int] = field(default_factory=list)  #: query x key pairs of the step's attention


def collate(arm: Arm, chunk: list, trainer):
    pad, cfg = trainer.processor.pad_token_id, trainer.processor.config
    if arm.row_length is None:
        return collate_padded(chunk, pad, cfg)
    packs = pack_greedy([len(s.input_ids) for s in chunk], arm.row_length)
    return collate_packed([[chunk[i] for i in pack] for pack in packs], pad, cfg)


def measure(trainer, lengths: list[int], micro_batch: int, steps: int, rounds: int) -> list[Arm]:
    arms = [Arm("padded", None), *(Arm(f"packed {n}", n) for n in lengths)]
    chunks = [trainer.stream.take(micro_batch) for _ in range(steps * rounds + 1)]
    batches = {arm.name: [collate(arm, chunk, trainer) for chunk in chunks] for arm in arms}
    for arm in arms:  # warm-up on the extra chunk
        trainer.batch = batches[arm.name][-1]
        trainer.step()
    for r in range(rounds):
        for arm in arms:
            times = []
            for k in range(r * steps, (r + 1) * steps):
                batch = trainer.batch = batches[arm.name][k]
                start = time.perf_counter()
                trainer.step()
                times.append(time.perf_counter() - start)
                width = batch.input_ids.shape[1]
                arm.samples.append(len(chunks[k]))
                arm.real_tokens.append(sum(len(s.input_ids) for s in chunks[k]))
                arm.positions.append(batch.input_ids.numel())
                arm.rows.append(batch.input_ids.shape[0])
                arm.widths.append(width)
                arm.pairs.append(batch.input_ids.shape[0] * width * width)  # every row attends over its width
            arm.seconds += times
            arm.round_means.append(statistics.fmean(times))
            print(f"round {r + 1}/{rounds} {arm.name}: {arm.round_means[-1]:.2f} s/step", file=sys.stderr)
    return arms


def report(arms: list[Arm], args: argparse.Namespace, data: Path, threads: int) -> None:
    padded = arms[0]

    def rate(arm: Arm, values: list[int]) -> float:
        return sum(values) / len(values) / statistics.median(arm.round_means)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\ndata: {data}; micro-batch {args.micro_batch}; {args.rounds} rounds x {args.steps} steps per arm")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {threads} torch threads, "
        f"Python {platform.python_version()}; 1-min load average at the end {load:.2f}"
    )
    header = "| arm | rows x length | padding | attention pairs | s/step | samples/s | real tok/s | tok/s vs padded |"
    print("\n" + header + "\n|" + "---|" * (header.count("|") - 1))
    for arm in arms:
        pad_fraction = 1 - sum(arm.real_tokens) / sum(arm.positions)
        shape = f"{statistics.median(arm.rows):g} x {statistics.median(arm.widths):g}"
        pairs = statistics.fmean(arm.pairs) / 1e6
        tok_s = rate(arm, arm.real_tokens)
        print(
            f"| {arm.name} | {shape} | {100 * pad_fraction:.0f}% | {pairs:.1f}M | "
            f"{statistics.median(arm.round_means):.2f} | {rate(arm, arm.samples):.1f} | {tok_s:,.0f} | "
            f"{tok_s / rate(padded, padded.real_tokens):.2f}x |"
        )
    mean_tokens = sum(padded.real_tokens) / sum(padded.samples)
    print(
        f"\nsamples average {mean_tokens:.0f} tokens. s/step: median over rounds of each round's mean; "
        "medians of rows x length; attention pairs per step (per layer and head)."
    )


if __name__ == "__main__":
    main()
