"""`nvila prune`: its arguments and the function that runs a pruning job.

Owns: `add_prune_args`, `run_prune` and `HELP` for the `nvila` command's table. Does not own the job
(`nvila.prune.job`).
"""

from __future__ import annotations

import argparse

from nvila.argtypes import MODEL_HELP, positive_int

HELP = (
    "prune a training set: keep the top fraction of every sub-dataset by DeltaLoss (or a baseline)\n\n"
    "examples:\n"
    "  nvila prune --large big/ --small small/ --data train.jsonl --keep 0.5\n"
    "  nvila prune --large big/ --small small/ --data train.jsonl --keep 0.3 --out pruned.jsonl --batch-size 16\n"
    "  nvila prune --data train.jsonl --keep 0.5 --method random --seed 1\n"
    "  nvila prune --small small/ --data train.jsonl --keep 0.5 --method cluster --clusters 16\n"
    "scores are appended to a score file as they come: rerun the same command to continue after an interruption;\n"
    "see docs/finetuning.md"
)


def keep_fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text}")
    return value


#: The choices, spelled out so that building the parser imports no torch (a test checks them against `job`).
PRUNE_METHODS = ("deltaloss", "random", "cluster")
GROUPINGS = ("source", "none")


def add_prune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="records to prune (.jsonl / .json)")
    p.add_argument("--large", help=f"the large model (DeltaLoss): {MODEL_HELP}")
    p.add_argument("--small", help=f"the small model (DeltaLoss; the cluster baseline's tower): {MODEL_HELP}")
    p.add_argument(
        "--keep",
        type=keep_fraction,
        default=0.5,
        help="fraction of every sub-dataset kept, in (0, 1]: ceil(keep x size) records (default: 0.5)",
    )
    p.add_argument(
        "--by",
        choices=GROUPINGS,
        default="source",
        help="sub-datasets: the records' 'source' field, or none (the whole file; default: source)",
    )
    p.add_argument("--method", choices=PRUNE_METHODS, default="deltaloss", help="default: deltaloss")
    p.add_argument("--out", help="pruned records file (default: DATA's folder, <stem>.<method><percent>.jsonl)")
    p.add_argument("--scores", help="score file, resumable (default: <out folder>/<data stem>.deltaloss-scores.jsonl)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="records per forward pass (default: 8)")
    p.add_argument("--max-length", type=positive_int, default=4096, help="longer records are skipped (default: 4096)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random and cluster baselines (default: 0)")
    p.add_argument("--clusters", type=positive_int, default=8, help="k-means clusters per sub-dataset (default: 8)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--dtype", default="float32", help="float32 or bfloat16 (default: float32)")


def run_prune(args: argparse.Namespace) -> int:
    """Score / cluster, keep a fraction of every sub-dataset, write the pruned records (and a histogram)."""
    from nvila.prune.job import PruneSettings, prune

    settings = PruneSettings(
        data=args.data, keep=args.keep, method=args.method, large=args.large, small=args.small, by=args.by,
        out=args.out, scores=args.scores, batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
        clusters=args.clusters, device=args.device, dtype=args.dtype,
    )  # fmt: skip
    result = prune(settings)
    total = sum(n for _, n in result.kept.values())
    kept = sum(k for k, _ in result.kept.values())
    print(f"kept {kept} of {total} records ({', '.join(f'{g} {k}/{n}' for g, (k, n) in result.kept.items())})")
    extra = f"; scores {result.scores}; histogram {result.histogram}" if result.scores else ""
    print(f"written to {result.out}{extra}")
    return 0
