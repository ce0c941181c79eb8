"""Where does a model lose colour? Linear probes on its features for the colour of a chart's line.

    python scripts/colour_probe.py src/nvila/resources/models/nvila-small [--charts 300]

Draws line charts with `nvila.synth.charts` (one line, one of six colours), asks "What colour is the line?",
and fits a linear classifier (softmax regression, standardised features, 2/3 train, 1/3 test) on: the vision
tower's features averaged over all tiles and patches, the projector's output tokens averaged, and the LLM's
hidden state at the last prompt position (after the first layer and after the last). Chance is 1/6. A stage
that has the colour and a later one that does not is where it is lost (docs/results.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nvila import loader
from nvila.synth import COLOURS
from nvila.synth.charts import make_chart, render

QUESTION = "<image>\nWhat colour is the line?"


def line_charts(n: int, seed: int = 0) -> list[dict]:
    """n line-chart scenes (bar charts drawn on the way are skipped)."""
    rng, scenes = np.random.default_rng(seed), []
    while len(scenes) < n:
        scene = make_chart(rng, (192, 192), 1).scene
        if scene["kind"] == "line":
            scenes.append(scene)
    return scenes


@torch.inference_mode()
def features(model, processor, scenes: list[dict]) -> dict[str, torch.Tensor]:
    """Per scene: tower mean [c], projector mean [h], LLM hidden after layer 1 and the last layer [h]."""
    rows: dict[str, list[torch.Tensor]] = {"tower": [], "projector": [], "llm layer 1": [], "llm last layer": []}
    for scene in scenes:
        inputs = processor(QUESTION, [render(scene)]).to_model_kwargs()
        pixels, blocks = inputs["pixel_values"], inputs["image_block_sizes"]
        rows["tower"].append(model.vision_tower(pixels).mean((0, 1)))
        rows["projector"].append(model.get_image_features(pixels, blocks).mean(0))
        embeds = model.embed(inputs["input_ids"], pixels, blocks)
        hidden = model.llm(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], output_hidden_states=True)
        rows["llm layer 1"].append(hidden.hidden_states[1][0, -1])
        rows["llm last layer"].append(hidden.hidden_states[-1][0, -1])
    return {name: torch.stack(values).float() for name, values in rows.items()}


def probe(x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> float:
    """Held-out accuracy of a softmax regression trained on the first 2/3 of (x [n, d], y [n])."""
    torch.manual_seed(0)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    cut = 2 * len(y) // 3
    linear = torch.nn.Linear(x.shape[1], len(COLOURS))
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(linear(x[:cut]), y[:cut]).backward()
        optimizer.step()
    with torch.no_grad():
        return float((linear(x[cut:]).argmax(1) == y[cut:]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="checkpoint folder (official layout)")
    parser.add_argument("--charts", type=int, default=300, help="line charts to draw (default: 300)")
    args = parser.parse_args()
    model, processor = loader.load(args.model)
    scenes = line_charts(args.charts)
    labels = torch.tensor([COLOURS.index(s["colour"]) for s in scenes])
    print(f"{args.model}: line colour from a linear probe, {args.charts} charts, chance {1 / len(COLOURS):.1%}")
    for name, x in features(model, processor, scenes).items():
        print(f"  {name:15s} {probe(x, labels):.1%}")


if __name__ == "__main__":
    main()
