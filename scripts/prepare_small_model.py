"""Prepare the shipped small model's inputs: split the synthetic data by kind and train its tokenizer.

    python scripts/prepare_small_model.py data/synth-small runs/small/tokenizer

Writes images.jsonl / events.jsonl and the mixtures images.yaml (image tasks) and mixed.yaml (video events
plus a third of the image data) beside train.jsonl, and a 1024-token byte-level BPE tokenizer trained on the
conversation text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nvila.tokenizer import save_tokenizer, train_tokenizer


def main(data: Path, tokenizer_dir: Path) -> None:
    lines = (data / "train.jsonl").read_text().splitlines()
    images = [line for line in lines if json.loads(line)["source"] != "events"]
    events = [line for line in lines if json.loads(line)["source"] == "events"]
    (data / "images.jsonl").write_text("\n".join(images) + "\n")
    (data / "events.jsonl").write_text("\n".join(events) + "\n")
    (data / "images.yaml").write_text("sources:\n  - {path: images.jsonl, ratio: 1.0}\n")
    (data / "mixed.yaml").write_text(
        "sources:\n  - {path: events.jsonl, ratio: 1.0}\n  - {path: images.jsonl, ratio: 0.33}\n"
    )
    texts = [turn["value"] for line in lines for turn in json.loads(line)["conversations"]]
    tokenizer = train_tokenizer(texts, vocab_size=1024)
    save_tokenizer(tokenizer, tokenizer_dir)
    print(f"{len(images)} image records, {len(events)} video records; tokenizer -> {tokenizer_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
