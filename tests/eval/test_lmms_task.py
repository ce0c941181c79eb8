"""The lmms-eval task folder over an `nvila synth` dataset: its files, its docs and its scoring (no lmms-eval)."""

from __future__ import annotations

import json

import pytest

from nvila.errors import ConfigError
from nvila.eval.lmms_task import doc_to_text, doc_to_visual, process_results, write_task
from nvila.eval.loaders import load_synth


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from nvila.synth.writer import write_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    tasks = {"shapes": 2, "events": 2}
    write_dataset(root, tasks, seed=3, image_size=64, video_size=64, heldout=dict.fromkeys(tasks, 1), max_questions=2,
                  progress=False, workers=1)  # fmt: skip
    return root


def test_task_folder_holds_the_yaml_and_one_doc_per_question(synth, tmp_path):
    yaml_path = write_task(synth, tmp_path / "task", "my_task")
    assert sorted(p.name for p in yaml_path.parent.iterdir()) == ["my_task.jsonl", "my_task.yaml"]
    text = yaml_path.read_text()
    assert "task: my_task\n" in text and "test: my_task.jsonl" in text and "max_new_tokens: 32" in text
    docs = [json.loads(line) for line in (tmp_path / "task" / "my_task.jsonl").read_text().splitlines()]
    samples = load_synth(synth)
    assert [d["id"] for d in docs] == [s.id for s in samples]
    assert [d["question"] for d in docs] == [s.question for s in samples]
    video_doc = next(d for d in docs if d["video"])
    assert video_doc["images"] == [] and video_doc["duration"] > 0
    image_doc = next(d for d in docs if d["images"])
    [image] = doc_to_visual(image_doc)
    assert image.mode == "RGB" and image.size == (64, 64)
    assert doc_to_visual(video_doc) == [video_doc["video"]]  # a path: the plugin sends it to the video path
    assert doc_to_text(image_doc) == image_doc["question"] and image_doc["question"].startswith("<image>\n")
    write_task(synth, tmp_path / "task", "my_task")  # rewriting its own task is allowed


def test_process_results_scores_like_nvila_eval(synth, tmp_path):
    write_task(synth, tmp_path / "task")
    docs = [json.loads(line) for line in (tmp_path / "task" / "nvila_synth.jsonl").read_text().splitlines()]
    shapes = next(d for d in docs if d["source"] == "shapes")
    assert process_results(shapes, [f" {shapes['answer'].upper()}."]) == {"exact_match": 1.0}
    assert process_results(shapes, ["no idea"]) == {"exact_match": 0.0}
    doc = {**shapes, "source": "events", "answer": "1.0 - 3.0 seconds", "duration": 4.0}
    assert process_results(doc, ["2.0 - 3.0 seconds"])["exact_match"] == pytest.approx(0.5)  # interval IoU


def test_bad_name_or_a_folder_with_other_files_is_refused(synth, tmp_path):
    with pytest.raises(ConfigError, match="task name 'my-task'"):
        write_task(synth, tmp_path / "a", "my-task")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds other files"):
        write_task(synth, tmp_path / "b")
    assert (tmp_path / "b" / "notes.txt").read_text() == "keep me"
