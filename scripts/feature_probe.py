"""Where does a model lose what the image shows? Linear probes on its features, stage by stage.

    python scripts/feature_probe.py src/nvila/resources/models/nvila-small --target line-colour
    python scripts/feature_probe.py src/nvila/resources/models/nvila-small --target title-word --scenes 3000

Targets (each drawn with `nvila.synth` at 192 px, seed 0, then asked as the held-out questions ask it):
- line-colour: the colour of a line chart's line (6 classes), "What colour is the line?";
- title-word: the first word of a page's title (211 classes), "What is the title?";
- line-word: the first word of a page's line 1 (211 classes), "What is the first word of line 1?".

A softmax regression (standardised features, 2/3 train, 1/3 test) is fitted on: the vision tower's features and
the projector's tokens averaged over the image ("mean"), and for words also read at the word ("at the word": the
top-scale tower patches and the projector tokens that cover the word's first 32 x 16 px, concatenated), the same
window of raw grey pixels (what a linear reader of the page itself gets), and the LLM's hidden state at the last
prompt position after its first and its last layer. A stage that has the answer and a later one that does not is
where it is lost (docs/results.md). Chance is one over the classes; the majority class of the test third is printed.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from nvila import loader
from nvila.models.nvila.dynamic_s2 import merge_scales
from nvila.synth import COLOURS, charts, documents

PAGE = (192, 192)
#: The window read at a word: this many px right and down from its top-left corner.
WINDOW = (32, 16)


@dataclass(frozen=True)
class Target:
    """What is probed: scenes to draw, the question, the class of a scene and where its answer is drawn."""

    classes: tuple[str, ...]
    question: str
    draw: Callable[[np.random.Generator], dict | None]  #: a scene, or None to skip the one drawn
    render: Callable[[dict], object]
    label: Callable[[dict], str]
    corner: Callable[[dict], tuple[int, int]] | None = None  #: (x, y) px of the answer's top-left


def _line_chart(rng: np.random.Generator) -> dict | None:
    scene = charts.make_chart(rng, PAGE, 1).scene
    return scene if scene["kind"] == "line" else None


def _page(rng: np.random.Generator) -> dict:
    return documents.make_document(rng, PAGE, 1).scene


TARGETS = {
    "line-colour": Target(COLOURS, "What colour is the line?", _line_chart, charts.render, lambda s: s["colour"]),
    "title-word": Target(
        documents.VOCABULARY,
        "What is the title?",
        _page,
        documents.render,
        lambda s: s["title"].split()[0].lower(),
        lambda s: (s["margin"], s["margin"]),
    ),
    "line-word": Target(
        documents.VOCABULARY,
        "What is the first word of line 1?",
        _page,
        documents.render,
        lambda s: s["lines"][0][0],
        lambda s: (s["margin"], s["top"]),
    ),
}


def scenes_of(target: Target, n: int, seed: int = 0) -> list[dict]:
    rng, scenes = np.random.default_rng(seed), []
    while len(scenes) < n:
        scene = target.draw(rng)
        if scene is not None:
            scenes.append(scene)
    return scenes


def window(fmap: torch.Tensor, corner: tuple[int, int], px_per_cell: int) -> torch.Tensor:
    """The cells of a [d, h, w] map covering `WINDOW` px from `corner`, flattened ([d * cells])."""
    x, y = corner[0] // px_per_cell, corner[1] // px_per_cell
    cols, rows = WINDOW[0] // px_per_cell, WINDOW[1] // px_per_cell
    return fmap[:, y : y + rows, x : x + cols].flatten()


@torch.inference_mode()
def features(model, processor, target: Target, scenes: list[dict]) -> dict[str, torch.Tensor]:
    """Per scene, each stage's features ([n, d] per name)."""
    cfg = model.nvila_config
    rows: dict[str, list[torch.Tensor]] = {}
    for scene in tqdm(scenes, desc="features", unit="scene"):
        image = target.render(scene)
        inputs = processor(f"<image>\n{target.question}", [image]).to_model_kwargs()
        pixels, blocks = inputs["pixel_values"], inputs["image_block_sizes"]
        tower = model.vision_tower(pixels)  # [tiles, p*p, c]
        tokens = model.get_image_features(pixels, blocks)  # [t, h] raster over the image
        found = {"tower (mean)": tower.mean((0, 1)), "projector (mean)": tokens.mean(0)}
        if target.corner is not None:
            corner = target.corner(scene)
            fmap = merge_scales(tower, cfg.s2_scales, blocks[0])  # [scales * c, p_rows, p_cols]
            patch_px = PAGE[0] // fmap.shape[-1]
            top_scale = fmap[-tower.shape[-1] :]  # the largest scale's own channels
            side = int(round(tokens.shape[0] ** 0.5))
            token_map = tokens.T.reshape(-1, side, side)  # [h, side, side]
            grey = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32))[None] / 255
            found["pixels (at the word)"] = window(grey, corner, 1)
            found["tower (at the word)"] = window(top_scale, corner, patch_px)
            found["projector (at the word)"] = window(token_map, corner, PAGE[0] // side)
        embeds = model.embed(inputs["input_ids"], pixels, blocks)
        hidden = model.llm(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], output_hidden_states=True)
        found["llm layer 1"] = hidden.hidden_states[1][0, -1]
        found["llm last layer"] = hidden.hidden_states[-1][0, -1]
        for name, value in found.items():
            rows.setdefault(name, []).append(value.float())
    return {name: torch.stack(values) for name, values in rows.items()}


def probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 300) -> float:
    """Held-out accuracy of a softmax regression trained on the first 2/3 of (x [n, d], y [n])."""
    torch.manual_seed(0)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    cut = 2 * len(y) // 3
    linear = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(linear(x[:cut]), y[:cut]).backward()
        optimizer.step()
    with torch.no_grad():
        return float((linear(x[cut:]).argmax(1) == y[cut:]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="checkpoint folder")
    parser.add_argument("--target", choices=TARGETS, default="line-colour", help="what to probe (default: line-colour)")
    parser.add_argument("--scenes", type=int, default=300, help="images to draw (default: 300)")
    args = parser.parse_args()
    target = TARGETS[args.target]
    model, processor = loader.load(args.model)
    scenes = scenes_of(target, args.scenes)
    labels = torch.tensor([target.classes.index(target.label(s)) for s in scenes])
    test = labels[2 * len(labels) // 3 :].tolist()
    majority = Counter(test).most_common(1)[0][1] / len(test)
    print(
        f"{args.model}: {args.target} from a linear probe, {args.scenes} images, {len(target.classes)} classes "
        f"(chance {1 / len(target.classes):.1%}, majority of the test third {majority:.1%})"
    )
    for name, x in features(model, processor, target, scenes).items():
        print(f"  {name:24s} {probe(x, labels, len(target.classes)):.1%}")


if __name__ == "__main__":
    main()
