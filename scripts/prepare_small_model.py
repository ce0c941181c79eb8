"""Prepare the shipped small model's inputs: split a synthetic data set by kind, train the tokenizer.

    python scripts/prepare_small_model.py data/synth-small --tokenizer runs/small/tokenizer
    python scripts/prepare_small_model.py data/synth-small-mq --video-ratio 2.0 --image-ratio 1.0 --colour-mix
    python scripts/prepare_small_model.py data/synth-small-15 --video-ratio 2.0 --image-ratio 1.0 --read-mix

Writes one record file per kind (documents.jsonl, charts.jsonl, shapes.jsonl, events.jsonl), images.jsonl (every
image record) and the mixtures images.yaml (image tasks) and mixed.yaml (video events plus image records at the
given per-epoch ratios) beside train.jsonl; with --colour-mix, also colour.jsonl (each image record cut down to its
colour and shape-naming turns) and colour.yaml (COLOUR_MIX: those beside the other records, so the other skills
keep being trained); with --read-mix, also colour.jsonl, read.yaml (READ_MIX: pages and charts drawn more often
than shapes, the colour turns and the video records), clock.yaml (the same with the video records drawn
CLOCK_VIDEO_RATIO times a epoch), clock-share.yaml (CLOCK_SHARE_MIX), replay.yaml (REPLAY_MIX) and rebalance.yaml
(REBALANCE_MIX): the mixtures of stages 15-23; with --tokenizer, also a 1024-token byte-level BPE tokenizer
trained on the conversation text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nvila.models.nvila.tokenization_nvila import save_tokenizer, train_tokenizer


def write_mixture(path: Path, ratios: dict[str, float]) -> None:
    """A mixture file drawing each record file of `ratios` (beside `path`) at its ratio, in the dict's order."""
    entries = "".join(f"  - {{path: {file}, ratio: {ratio}}}\n" for file, ratio in ratios.items())
    path.write_text("sources:\n" + entries)


def split(data: Path, video_ratio: float, image_ratio: float) -> list[str]:
    """Write the per-kind record files and mixtures of `data`; returns its train.jsonl lines."""
    lines = (data / "train.jsonl").read_text().splitlines()
    sources = [json.loads(line)["source"] for line in lines]
    by_source: dict[str, list[str]] = {}
    for line, source in zip(lines, sources):
        by_source.setdefault(source, []).append(line)
    for source, kept in by_source.items():
        (data / f"{source}.jsonl").write_text("\n".join(kept) + "\n")
    images = [line for line, source in zip(lines, sources) if source != "events"]
    events = by_source.get("events", [])
    (data / "images.jsonl").write_text("\n".join(images) + "\n")
    write_mixture(data / "images.yaml", {"images.jsonl": 1.0})
    write_mixture(data / "mixed.yaml", {"events.jsonl": video_ratio, "images.jsonl": image_ratio})
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


#: colour.yaml's per-epoch ratios: a quarter of the colour turns and of the image records, every video record (what
#: stage 11 of the shipped model drew: until mixtures kept each entry's ratio, the images' 0.25 also applied to the
#: colour turns, which share their record sources, where 1.0 was written).
COLOUR_MIX = {"colour.jsonl": 0.25, "images.jsonl": 0.25, "events.jsonl": 1.0}
#: read.yaml's per-epoch ratios besides the video records' --video-ratio: pages have the most written words a
#: record, charts the values and labels; the colour turns keep the colours named.
READ_MIX = {"documents.jsonl": 3.0, "charts.jsonl": 1.5, "shapes.jsonl": 0.5, "colour.jsonl": 0.5}
#: clock.yaml draws the video records this often a epoch, beside READ_MIX (the clock stage: "when" questions)
CLOCK_VIDEO_RATIO = 5.0
#: clock-share.yaml: the videos ~40% of the records drawn, the pages ~25% (stage 20: the clock wants its share)
CLOCK_SHARE_MIX = {
    "events.jsonl": 6.0,
    "documents.jsonl": 1.5,
    "charts.jsonl": 1.0,
    "shapes.jsonl": 0.5,
    "colour.jsonl": 0.5,
}
#: replay.yaml: clock.yaml with the colour turns 3x and the shapes 2x as often (stage 22, after colour turns alone)
REPLAY_MIX = {
    "events.jsonl": CLOCK_VIDEO_RATIO,
    "documents.jsonl": 3.0,
    "charts.jsonl": 1.5,
    "shapes.jsonl": 1.0,
    "colour.jsonl": 1.5,
}
#: rebalance.yaml: replay.yaml with the videos and the shapes drawn more often (stage 23: the clock and counting)
REBALANCE_MIX = {**REPLAY_MIX, "events.jsonl": 6.0, "shapes.jsonl": 2.0}


def write_colour_turns(data: Path) -> None:
    """colour.jsonl: the image records of `data` cut down to their colour and shape-naming turns."""
    records = [colour_turns(json.loads(line)) for line in (data / "images.jsonl").read_text().splitlines()]
    kept = [r for r in records if r is not None]
    (data / "colour.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    print(f"{data}: {len(kept)} records with colour or shape-naming questions -> colour.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="an `nvila synth` folder")
    parser.add_argument("--tokenizer", type=Path, help="also train the tokenizer on its text, into this folder")
    parser.add_argument("--video-ratio", type=float, default=1.0, help="video records drawn per epoch, x their count")
    parser.add_argument("--image-ratio", type=float, default=0.33, help="image records drawn per epoch in mixed.yaml")
    parser.add_argument("--colour-mix", action="store_true", help="also write colour.jsonl and colour.yaml")
    parser.add_argument(
        "--read-mix",
        action="store_true",
        help="also write colour.jsonl and the reading stages' mixtures: read, clock, clock-share, replay, rebalance",
    )
    args = parser.parse_args()
    lines = split(args.data, args.video_ratio, args.image_ratio)
    if args.colour_mix or args.read_mix:
        write_colour_turns(args.data)
    if args.colour_mix:
        write_mixture(args.data / "colour.yaml", COLOUR_MIX)
    if args.read_mix:
        write_mixture(args.data / "read.yaml", {"events.jsonl": args.video_ratio, **READ_MIX})
        write_mixture(args.data / "clock.yaml", {"events.jsonl": CLOCK_VIDEO_RATIO, **READ_MIX})
        write_mixture(args.data / "clock-share.yaml", CLOCK_SHARE_MIX)
        write_mixture(args.data / "replay.yaml", REPLAY_MIX)
        write_mixture(args.data / "rebalance.yaml", REBALANCE_MIX)
    if args.tokenizer:
        texts = [turn["value"] for line in lines for turn in json.loads(line)["conversations"]]
        save_tokenizer(train_tokenizer(texts, vocab_size=1024), args.tokenizer)
        print(f"tokenizer -> {args.tokenizer}")


if __name__ == "__main__":
    main()
