"""An lmms-eval task over an `nvila synth` dataset: the task folder and the functions its YAML names.

Owns: `write_task`, which writes a folder that `lmms-eval --include_path FOLDER --tasks NAME` loads (the task
YAML and the held-out questions as a JSONL file that `datasets` reads from disk), and the task's
`doc_to_visual` / `doc_to_text` / `process_results`, which the YAML names by import path. Questions, prompts
and scores are those of `nvila eval --benchmark synth` (`loaders.load_synth`, `benchmarks.score_synth`, greedy,
32 new tokens, no stop string), so lmms-eval's `exact_match` is the same number on the same questions.
Does not import lmms-eval: lmms-eval imports this module through the YAML's `!function` tags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nvila.errors import ConfigError
from nvila.eval.benchmarks import get_benchmark, score_synth
from nvila.eval.loaders import EvalSample, load_synth
from nvila.image_io import load_image

DEFAULT_NAME = "nvila_synth"

# dataset_kwargs.data_files is resolved against the YAML's folder by lmms-eval (>= 0.7.3) for the `json` builder.
TASK_YAML = """\
# lmms-eval --model nvila --model_args pretrained=CKPT --include_path {folder} --tasks {name}
# Written by nvila.eval.lmms_task.write_task from the held-out split of {data}.
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {name}.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function nvila.eval.lmms_task.doc_to_visual
doc_to_text: !function nvila.eval.lmms_task.doc_to_text
doc_to_target: answer
generation_kwargs:  # nvila eval's synth settings: greedy, 32 new tokens, no stop string
  max_new_tokens: {max_new_tokens}
  temperature: 0
  do_sample: false
  until: []
process_results: !function nvila.eval.lmms_task.process_results
metric_list:
  - metric: exact_match  # after the source's normalisation; "a - b seconds" answers score the intervals' IoU
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def to_doc(sample: EvalSample) -> dict:
    """One lmms-eval doc: the synth sample's question (with its placeholders), answer and absolute media paths."""
    return {
        "id": sample.id,
        "source": sample.task,
        "template": sample.meta.get("template", ""),
        "question": sample.question,
        "answer": sample.answers[0],
        "images": [str(Path(p).resolve()) for p in sample.images],
        "video": str(Path(sample.videos[0]).resolve()) if sample.videos else "",
        "duration": sample.meta.get("duration"),
    }


def to_sample(doc: dict) -> EvalSample:
    """The `EvalSample` a doc came from, as far as scoring needs it."""
    meta = {"duration": doc["duration"]} if doc.get("duration") is not None else {}
    return EvalSample(doc["id"], doc["question"], [doc["answer"]], task=doc["source"], meta=meta)


def write_task(data: str | Path, out: str | Path, name: str = DEFAULT_NAME) -> Path:
    """Write `<out>/<name>.yaml` and `<out>/<name>.jsonl` for the held-out split of the synth dataset `data`.

    The JSONL holds absolute media paths, so the dataset must stay where it is. `out` may exist only empty or
    holding an earlier task of this name (rewritten). Returns the YAML's path.
    """
    if not name.isidentifier():
        raise ConfigError(f"task name {name!r} must be letters, digits and underscores (an lmms-eval task name)")
    out = Path(out)
    files = {out / f"{name}.yaml", out / f"{name}.jsonl"}
    if out.is_dir() and (others := sorted(p.name for p in out.iterdir() if p not in files)):
        raise ConfigError(f"{out} holds other files ({', '.join(others[:3])}); write the task to an empty folder")
    docs = [to_doc(s) for s in load_synth(Path(data))]
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(doc) + "\n" for doc in docs)
    yaml_text = TASK_YAML.format(
        folder=out, name=name, data=Path(data).resolve(), max_new_tokens=get_benchmark("synth").max_new_tokens
    )
    yaml_path = out / f"{name}.yaml"
    yaml_path.write_text(yaml_text, encoding="utf-8")
    return yaml_path


# ---- the task's functions (lmms-eval calls them by the names in the YAML) ------------------------------------
def doc_to_visual(doc: dict) -> list[Any]:
    """The doc's images as RGB PIL images, or its video as a path (the nvila plugin routes paths by suffix)."""
    return [load_image(p) for p in doc["images"]] + ([doc["video"]] if doc["video"] else [])


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The question as `nvila eval` asks it: "<image>\\n" per image (or "<vila/video>\\n") then the question."""
    return doc["question"]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """{"exact_match": score} of the first response, scored by `score_synth`."""
    return {"exact_match": score_synth(results[0], to_sample(doc)).value}
