"""Prepare the shipped small model's inputs: split a synthetic data set by kind, train the tokenizer.

    python scripts/prepare_small_model.py data/synth-small --tokenizer runs/small/tokenizer
    python scripts/prepare_small_model.py data/synth-small-mq --video-ratio 2.0 --image-ratio 1.0 --colour-mix

Writes images.jsonl / events.jsonl and the mixtures images.yaml (image tasks) and mixed.yaml (video events
plus image records at the given per-epoch ratios) beside train.jsonl; with --colour-mix, also colour.jsonl
(each image record cut down to its colour and shape-naming turns) and colour.yaml (those, plus a quarter of the
image records and every video record per epoch, so the other skills keep being trained); with --tokenizer, also
a 1024-token byte-level BPE tokenizer trained on the conversation text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nvila.models.nvila.tokenization_nvila import save_tokenizer, train_tokenizer


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


#: The question templates colour.jsonl keeps: naming a colour, counting by colour, naming a shape.
COLOUR_TEMPLATES = (
    "charts/bar_colour",
    "charts/line_colour",
    "shapes/colour_of",
    "shapes/count_colour",
    "shapes/shape_of",
)
IMAGE_TAG = "<image>\n"


def colour_turns(record: dict) -> dict | None:
    """`record` with only its COLOUR_TEMPLATES question/answer pairs (the image tag on the first question), or
    None when it has none. Pair k of `conversations` was asked from `meta.templates[k]`."""
    conv, templates = record["conversations"], record["meta"]["templates"]
    kept = [k for k, t in enumerate(templates) if t in COLOUR_TEMPLATES]
    if not kept:
        return None
    turns = [{**turn, "value": turn["value"].removeprefix(IMAGE_TAG)} for k in kept for turn in conv[2 * k : 2 * k + 2]]
    turns[0]["value"] = IMAGE_TAG + turns[0]["value"]
    asked = [templates[k] for k in kept]
    return {**record, "conversations": turns, "meta": {**record["meta"], "template": asked[0], "templates": asked}}


def write_colour_mix(data: Path) -> None:
    """colour.jsonl and colour.yaml beside images.jsonl / events.jsonl (see the module docstring)."""
    records = [colour_turns(json.loads(line)) for line in (data / "images.jsonl").read_text().splitlines()]
    kept = [r for r in records if r is not None]
    (data / "colour.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    (data / "colour.yaml").write_text(
        "sources:\n  - {path: colour.jsonl, ratio: 1.0}\n  - {path: images.jsonl, ratio: 0.25}\n"
        "  - {path: events.jsonl, ratio: 1.0}\n"
    )
    print(f"{data}: {len(kept)} records with colour or shape-naming questions -> colour.jsonl, colour.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="an `nvila synth` folder")
    parser.add_argument("--tokenizer", type=Path, help="also train the tokenizer on its text, into this folder")
    parser.add_argument("--video-ratio", type=float, default=1.0, help="video records drawn per epoch, x their count")
    parser.add_argument("--image-ratio", type=float, default=0.33, help="image records drawn per epoch in mixed.yaml")
    parser.add_argument("--colour-mix", action="store_true", help="also write colour.jsonl and colour.yaml")
    args = parser.parse_args()
    lines = split(args.data, args.video_ratio, args.image_ratio)
    if args.colour_mix:
        write_colour_mix(args.data)
    if args.tokenizer:
        texts = [turn["value"] for line in lines for turn in json.loads(line)["conversations"]]
        save_tokenizer(train_tokenizer(texts, vocab_size=1024), args.tokenizer)
        print(f"tokenizer -> {args.tokenizer}")


if __name__ == "__main__":
    main()
