"""Prepare the shipped small model's inputs: split a synthetic data set by kind, train the tokenizer.

    python scripts/prepare_small_model.py data/synth-small --tokenizer runs/small/tokenizer
    python scripts/prepare_small_model.py data/synth-small-mq --video-ratio 2.0 --image-ratio 1.0

Writes images.jsonl / events.jsonl and the mixtures images.yaml (image tasks) and mixed.yaml (video events
plus image records at the given per-epoch ratios) beside train.jsonl; with --tokenizer, also a 1024-token
byte-level BPE tokenizer trained on the conversation text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nvila.tokenizer import save_tokenizer, train_tokenizer


def split(data: Path, video_ratio: float, image_ratio: float) -> list[str]:
    """Write the per-kind record files and mixtures of `data`; returns its train.jsonl lines."""
    lines = (data / "train.jsonl").read_text().splitlines()
    images = [line for line in lines if json.loads(line)["source"] != "events"]
    events = [line for line in lines if json.loads(line)["source"] == "events"]
    (data / "images.jsonl").write_text("\n".join(images) + "\n")
    (data / "events.jsonl").write_text("\n".join(events) + "\n")
    (data / "images.yaml").write_text("sources:\n  - {path: images.jsonl, ratio: 1.0}\n")
    (data / "mixed.yaml").write_text(
        f"sources:\n  - {{path: events.jsonl, ratio: {video_ratio}}}\n"
        f"  - {{path: images.jsonl, ratio: {image_ratio}}}\n"
    )
    print(f"{data}: {len(images)} image records, {len(events)} video records")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="an `nvila synth` folder")
    parser.add_argument("--tokenizer", type=Path, help="also train the tokenizer on its text, into this folder")
    parser.add_argument("--video-ratio", type=float, default=1.0, help="video records drawn per epoch, x their count")
    parser.add_argument("--image-ratio", type=float, default=0.33, help="image records drawn per epoch in mixed.yaml")
    args = parser.parse_args()
    lines = split(args.data, args.video_ratio, args.image_ratio)
    if args.tokenizer:
        texts = [turn["value"] for line in lines for turn in json.loads(line)["conversations"]]
        save_tokenizer(train_tokenizer(texts, vocab_size=1024), args.tokenizer)
        print(f"tokenizer -> {args.tokenizer}")


if __name__ == "__main__":
    main()
