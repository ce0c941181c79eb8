"""A real lmms-eval run: its evaluator loads `--model nvila` through the entry point and a local task folder
written by `nvila.eval.lmms_task`, on a tiny random model and a tiny synth dataset, offline.

Needs lmms-eval's evaluator and the runtime modules it imports (`make setup` installs them; see
docs/evaluation.md); without them these tests skip with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nvila.eval.benchmarks import score_synth
from nvila.eval.lmms_task import doc_to_visual, to_sample, write_task
from nvila.generation import GenerationOptions
from nvila.pipeline import NVILAPipeline

try:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager
except ImportError as e:  # lmms-eval, or a module its evaluator imports, is missing
    pytest.skip(f"lmms-eval's evaluator cannot be imported ({e}); run `make setup`", allow_module_level=True)

TASK = "nvila_synth_check"
BATCH = 3


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Held-out questions of 3 image sources and the video source (1 record each, up to 2 questions)."""
    from nvila.synth.writer import write_dataset

    data = tmp_path_factory.mktemp("data") / "synth"
    tasks = {"documents": 2, "charts": 2, "shapes": 2, "events": 2}
    write_dataset(data, tasks, seed=7, image_size=64, video_size=64, heldout=dict.fromkeys(tasks, 1), max_questions=2,
                  progress=False, workers=1)  # fmt: skip
    return write_task(data, tmp_path_factory.mktemp("tasks") / TASK, TASK).parent


@pytest.fixture
def offline(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


def docs(task_dir):
    return [json.loads(line) for line in (task_dir / f"{TASK}.jsonl").read_text().splitlines()]


def pipeline_answers(checkpoint, docs):
    """What NVILAPipeline answers itself: the task's prompts and media, batched as the plugin batches them."""
    pipe = NVILAPipeline.from_pretrained(checkpoint)
    options = GenerationOptions(max_new_tokens=32)  # the task's generation_kwargs: greedy, 32 tokens, no stop
    answers = []
    for start in range(0, len(docs), BATCH):
        batch = docs[start : start + BATCH]
        visuals = [doc_to_visual(d) for d in batch]
        images = [[v for v in vs if not isinstance(v, str)] for vs in visuals]
        videos = [[v for v in vs if isinstance(v, str)] for vs in visuals]
        answers += pipe.generate_batch([d["question"] for d in batch], images, options, videos=videos)
    return answers


def check_run(results, predictions, checkpoint, task_dir):
    """The metric, the sample count and every prediction against the pipeline's own answers."""
    expected_docs = docs(task_dir)
    assert len(expected_docs) >= 4 and any(d["video"] for d in expected_docs)
    assert results["n-samples"][TASK] == {"original": len(expected_docs), "effective": len(expected_docs)}
    assert [p["doc_id"] for p in predictions] == list(range(len(expected_docs)))
    assert [p["input"] for p in predictions] == [d["question"] for d in expected_docs]
    outputs = [p["output"] for p in predictions]
    assert outputs == pipeline_answers(checkpoint, expected_docs)
    scores = [score_synth(o, to_sample(d)).value for o, d in zip(outputs, expected_docs)]
    assert [p["exact_match"] for p in predictions] == scores
    assert results["results"][TASK]["exact_match,none"] == pytest.approx(sum(scores) / len(scores))


def test_simple_evaluate_runs_nvila_on_a_local_task(checkpoint, task_dir, offline):
    """lmms-eval's evaluator API with the model given by name, as the CLI gives it."""
    out = simple_evaluate(
        model="nvila",
        model_args=f"pretrained={checkpoint},device=cpu,batch_size={BATCH}",
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        bootstrap_iters=0,
    )
    predictions = [
        {"doc_id": s["doc_id"], "input": s["arguments"][0], "output": s["filtered_resps"][0],
         "exact_match": s["exact_match"]}
        for s in out["samples"][TASK]
    ]  # fmt: skip
    check_run(out, predictions, checkpoint, task_dir)


@pytest.mark.slow  # a fresh interpreter, and lmms-eval's CLI indexes its ~340 built-in task folders (1-2 min)
def test_cli_runs_nvila_on_a_local_task(checkpoint, task_dir, tmp_path, offline):
    """The command a user types; its results and samples files are what is checked (it exits 0 even on errors)."""
    out = tmp_path / "results"
    cmd = [str(Path(sys.executable).with_name("lmms-eval")), "--model", "nvila", "--model_args",
           f"pretrained={checkpoint},device=cpu", "--batch_size", str(BATCH), "--include_path", str(task_dir),
           "--tasks", TASK, "--output_path", str(out), "--log_samples"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    [results_file] = out.glob("*/*_results.json") or pytest.fail(f"no results file; lmms-eval said:\n{run.stderr}")
    [samples_file] = out.glob(f"*/*_samples_{TASK}.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    predictions = [
        {"doc_id": s["doc_id"], "input": s["input"], "output": s["filtered_resps"], "exact_match": s["exact_match"]}
        for s in samples
    ]  # fmt: skip
    check_run(json.loads(results_file.read_text()), predictions, checkpoint, task_dir)
