"""DeltaLoss vs random pruning in miniature: fine-tune on the full set, on DeltaLoss-50% and on random-50%.

    python benchmarks/prune_experiment.py                                  # ~10 min on 2 CPU cores
    python benchmarks/prune_experiment.py --seeds 0 --tasks shapes=400,charts=400   # quicker

Everything goes through the project's own code, under --dir:
1. `nvila synth`: shapes + charts at 64 px with a held-out split (--tasks, --heldout).
2. A random-weight base of the tiny geometry (64 px tiles, patch 8, one tile per image, 16 visual tokens; tower
   64 x 4 layers; LLM 128 x 4 layers), saved in the official layout; a narrower one (tower 32 x 2, LLM 64 x 2).
3. large = `finetune --method full --vision full` of the base on the full train set; small = the same for the
   narrow base (both --epochs, data seed 100).
4. `prune`: DeltaLoss (large vs small) and random, keep 0.5 per source.
5. Arms: fine-tune the base on full / deltaloss50 / random50 for --epochs passes over the kept set (the pruned
   arms take half the steps of the full one), once per seed in --seeds (data order and LoRA-free init).
6. Held-out exact match per source: an answer counts when greedy decoding reproduces its tokens and end token
   (checked teacher-forced: the argmax at every answer position is the answer token, which is exactly when
   greedy decoding would produce it); every answer of a multi-question record counts once. The majority-answer
   baseline of the synth manifest (most common train answer per question template) is printed alongside.
Prints a markdown table and writes results.json to --dir.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ARMS = ("full", "deltaloss50", "random50")


def geometry(tower: tuple[int, int], text: tuple[int, int]):
    from nvila.models.nvila.configuration_nvila import NVILAConfig, from_name

    data = from_name("tiny").to_dict()
    data["vision"].update(image_size=64, patch_size=8, hidden_size=tower[0], intermediate_size=4 * tower[0],
                          num_hidden_layers=tower[1], num_attention_heads=2)  # fmt: skip
    data["text"].update(hidden_size=text[0], intermediate_size=4 * text[0], num_hidden_layers=text[1],
                        num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    data.update(image_aspect_ratio="resize", s2_scales=[64], name="experiment")
    return NVILAConfig.from_dict(data)


def save_base(folder: Path, cfg, seed: int) -> Path:
    from nvila.checkpoint import save
    from nvila.factory import random_pretrained

    if not (folder / "config.json").is_file():
        model, processor = random_pretrained(cfg, seed=seed)
        save(model, processor.tokenizer, folder)
    return folder


def train(base: Path, data: Path, out: Path, epochs: float, seed: int, args) -> Path:
    """Full fine-tuning for `epochs` passes over `data`; returns the exported model folder."""
    from nvila.finetune import FinetuneSpec, finetune, finetune_recipe

    if (out / "model" / "config.json").is_file():
        return out / "model"
    n = sum(1 for line in data.read_text().splitlines() if line.strip())
    steps = max(1, math.ceil(epochs * n / args.batch))
    spec = FinetuneSpec(method="full", vision="full")
    recipe = finetune_recipe(
        spec, str(base), str(data), str(out), lr=args.lr, vit_lr_ratio=0.5, max_steps=steps,
        micro_batch_size=args.batch, max_length=1024, save_every=10_000, device="cpu", seed=seed,
    )  # fmt: skip
    resume = (out / "state").exists()
    finetune(recipe, spec, resume=resume)
    return out / "model"


@torch.no_grad()
def exact_match(model_dir: Path, records_file: Path, batch: int = 32) -> dict[str, tuple[int, int]]:
    """source -> (answers reproduced by greedy decoding, answers)."""
    import nvila
    from nvila.data import ConversationDataset, collate_padded, read_records
    from nvila.prompt import IGNORE_INDEX

    model, processor = nvila.load(model_dir)
    records = read_records(records_file)
    dataset = ConversationDataset(records, processor, max_length=4096)
    hits, totals = Counter(), Counter()
    for start in range(0, len(records), batch):
        chunk = [(r, dataset[i]) for i, r in enumerate(records[start : start + batch], start=start)]
        chunk = [(r, s) for r, s in chunk if s is not None]
        tensors = collate_padded([s for _, s in chunk], processor.pad_token_id, model.config)
        kwargs = tensors.model_kwargs("cpu")
        labels = kwargs.pop("labels")[:, 1:]
        predicted = model(**kwargs).logits[:, :-1].argmax(-1)
        for row, (record, _) in enumerate(chunk):
            labelled = (labels[row] != IGNORE_INDEX).tolist()
            right = (predicted[row] == labels[row]).tolist()
            span_ok, inside = True, False
            for is_label, ok in zip(labelled + [False], right + [True]):
                if is_label:
                    span_ok, inside = (span_ok and ok) if inside else ok, True
                elif inside:  # an answer span ended
                    hits[record.source] += span_ok
                    totals[record.source] += 1
                    inside = False
    return {source: (hits[source], totals[source]) for source in sorted(totals)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("runs/prune-experiment"))
    parser.add_argument("--tasks", default="shapes=900,charts=900")
    parser.add_argument("--heldout", default="0.15")
    parser.add_argument("--epochs", type=float, default=2.0, help="passes over each arm's (kept) train set")
    parser.add_argument("--seeds", default="0,1", help="training seeds of the arms")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    start = time.time()
    root = args.dir
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    if not (data / "manifest.json").is_file():
        from nvila.cli import main as nvila

        nvila(["synth", "--out", str(data), "--tasks", args.tasks, "--image-size", "64", "--heldout", args.heldout])
    train_file, heldout = data / "train.jsonl", data / "heldout.jsonl"
    base = save_base(root / "base", geometry((64, 4), (128, 4)), seed=0)
    narrow = save_base(root / "base-narrow", geometry((32, 2), (64, 2)), seed=0)
    large = train(base, train_file, root / "large", args.epochs, 100, args)
    small = train(narrow, train_file, root / "small", args.epochs, 100, args)
    t_models = time.time()

    from nvila.prune import PruneSettings, prune

    kept = {"full": train_file}
    for method in ("deltaloss", "random"):
        out = root / f"{method}50.jsonl"
        prune(PruneSettings(data=str(train_file), keep=0.5, method=method, large=str(large), small=str(small),
                            out=str(out), batch_size=32, device="cpu"))  # fmt: skip
        kept[f"{method}50"] = out
    t_prune = time.time()

    results: dict = {"baseline": json.loads((data / "manifest.json").read_text())["majority_baseline"]["heldout"]}
    results["records"] = {arm: sum(1 for line in f.read_text().splitlines() if line.strip()) for arm, f in kept.items()}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in ARMS:
            model = train(base, kept[arm], root / f"{arm}-seed{seed}", args.epochs, seed, args)
            results[f"{arm}/seed{seed}"] = exact_match(model, heldout)
            print(f"{arm} seed {seed}: {results[f'{arm}/seed{seed}']}", file=sys.stderr)
    results["large"], results["small"] = exact_match(large, heldout), exact_match(small, heldout)
    results["seconds"] = {"models": t_models - start, "prune": t_prune - t_models, "total": time.time() - start}
    (root / "results.json").write_text(json.dumps(results, indent=2))
    report(results, args)


def report(results: dict, args) -> None:
    sources = sorted(results["baseline"])
    print(f"# held-out exact match (tasks {args.tasks}, {args.epochs} epochs of each arm's set, seeds {args.seeds})\n")
    print("| model | " + " | ".join(sources) + " | train records | steps |")
    print("|---|" + "---|" * (len(sources) + 2))
    base = " | ".join(f"{results['baseline'][s]:.3f}" for s in sources)
    print(f"| majority answer per template | {base} | | |")
    full = results["records"]["full"]
    for name in ("small", "large"):
        row = results[name]
        cells = " | ".join(f"{row[s][0] / row[s][1]:.3f}" for s in sources)
        print(f"| {name} (DeltaLoss scorer) | {cells} | {full} | {math.ceil(args.epochs * full / args.batch)} |")
    for arm in ARMS:
        runs = [v for k, v in results.items() if k.startswith(arm + "/")]
        cells = []
        for s in sources:
            accs = [r[s][0] / r[s][1] for r in runs]
            spread = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
            cells.append(f"{statistics.mean(accs):.3f}{spread}")
        n = results["records"][arm]
        steps = math.ceil(args.epochs * n / args.batch)
        print(f"| {arm} (mean of {len(runs)} seeds) | " + " | ".join(cells) + f" | {n} | {steps} |")
    seconds = results["seconds"]
    print(
        f"\ntime: {seconds['total']:.0f} s (scorer models {seconds['models']:.0f} s, pruning {seconds['prune']:.0f} s)"
    )


if __name__ == "__main__":
    main()
