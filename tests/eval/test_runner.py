"""`nvila eval` end to end on a tiny random model and a tiny synth dataset: files, resume, --limit, errors,
no-answer counting, comparisons, and the video options (--frame-sampling, --video-timestamps)."""

from __future__ import annotations

import argparse
import json

import pytest

from nvila.checkpoint import save
from nvila.errors import ConfigError
from nvila.eval.cli import add_eval_args, run_eval
from nvila.eval.runner import PREDICTIONS, EvalSettings, pipeline_generator, run_benchmark
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import from_name
from nvila.models.nvila.processing_nvila import NVILAProcessor
from nvila.pipeline import NVILAPipeline
from nvila.temporal import timestamp_prefix
from tests.test_video_io import RATE, frame_index, write_video


def small_config():
    """The tiny preset with 64 px tiles of 16 px patches, one tile per image, 2 video frames (fast on CPU)."""
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 64, "patch_size": 16}  # fmt: skip
    return from_name("tiny").replace(vision=vision, image_aspect_ratio="resize", num_video_frames=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, processor = random_pretrained(small_config(), seed=0)
    return save(model, processor.tokenizer, tmp_path_factory.mktemp("ckpt") / "tiny-eval")


@pytest.fixture(scope="module")
def pipe(checkpoint):
    return NVILAPipeline.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """3 image tasks and the video task, 2 records each (1 held out), up to 2 questions a record."""
    from nvila.synth.writer import write_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    tasks = {"documents": 2, "charts": 2, "shapes": 2, "events": 2}
    write_dataset(root, tasks, seed=5, image_size=64, video_size=64, heldout=dict.fromkeys(tasks, 1), max_questions=2,
                  progress=False, workers=1)  # fmt: skip
    return root


class Counting:
    """A `load_generate` that records how often the model is loaded and which prompts it answers."""

    def __init__(self, generate=None, pipe=None):
        self.loads, self.prompts, self._generate, self._pipe = 0, [], generate, pipe

    def __call__(self, settings, max_new_tokens):
        self.loads += 1
        inner = self._generate or pipeline_generator(self._pipe, max_new_tokens)

        def generate(prompts, images, videos):
            self.prompts += prompts
            return inner(prompts, images, videos)

        return generate


def _parser():
    from nvila.eval.cli import EVAL_HELP

    parser = argparse.ArgumentParser(description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    return parser


def parse(argv):
    return _parser().parse_args(argv)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_end_to_end_writes_predictions_summary_report_and_plot(checkpoint, synth, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", str(checkpoint), "--benchmark", "synth", "--data", str(synth), "--out", str(out),
            "--batch-size", "3", "--max-new-tokens", "3", "--no-progress"]  # fmt: skip
    assert run_eval(parse(argv)) == 0
    predictions = lines(out / PREDICTIONS)
    heldout = lines(synth / "heldout.jsonl")
    assert len(predictions) == sum(len(r["conversations"]) // 2 for r in heldout)
    assert {p["task"] for p in predictions} == {"documents", "charts", "shapes", "events"}
    assert any(p["videos"] for p in predictions) and all(isinstance(p["output"], str) for p in predictions)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(checkpoint) and summary["benchmark"] == "synth"
    assert summary["count"] == len(predictions)
    assert summary["settings"]["batch_size"] == 3 and summary["settings"]["max_new_tokens"] == 3
    assert summary["score"] == pytest.approx(sum(p["score"] for p in predictions) / len(predictions))
    assert summary["no_answer"] == sum(p["no_answer"] for p in predictions)
    assert set(summary["tasks"]) == {"documents", "charts", "shapes", "events"}
    assert sum(t["count"] for t in summary["tasks"].values()) == summary["count"]
    manifest = json.loads((synth / "manifest.json").read_text())
    for task, value in manifest["majority_baseline"]["heldout"].items():  # the whole split was evaluated
        assert summary["majority_baseline"][task] == pytest.approx(value)
    assert "all" in summary["majority_baseline"]
    assert summary["dataset"]["content_hash"] == manifest["content_hash"] and summary["dataset"]["seed"] == 5
    report = (out / "report.md").read_text()
    assert "![scores](scores.png)" in report and "| events |" in report and "majority baseline" in report
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "synth: exact_match/iou" in capsys.readouterr().out


def test_resume_skips_done_ids_and_limit_is_honoured(pipe, synth, tmp_path):
    settings = EvalSettings("synth", str(synth), str(tmp_path), "tiny", limit=3, batch_size=2, max_new_tokens=2)
    first = Counting(pipe=pipe)
    summary = run_benchmark(settings, first, progress=False)
    assert summary["count"] == 3 and len(first.prompts) == 3 and first.loads == 1
    done = [p["id"] for p in lines(tmp_path / PREDICTIONS)]
    assert len(done) == 3

    # an interrupted write leaves half a line: it is dropped and that sample is not counted as done
    with open(tmp_path / PREDICTIONS, "a") as f:
        f.write('{"id": "charts-h000000#0", "sco')
    settings.limit = None
    second = Counting(pipe=pipe)
    summary = run_benchmark(settings, second, progress=False)
    total = summary["count"]
    assert total > 3 and len(second.prompts) == total - 3
    predictions = lines(tmp_path / PREDICTIONS)
    assert [p["id"] for p in predictions[:3]] == done and len({p["id"] for p in predictions}) == total

    third = Counting(pipe=pipe)
    assert run_benchmark(settings, third, progress=False)["count"] == total
    assert third.loads == 0 and third.prompts == []  # nothing left to answer: the model is not even loaded


def test_rerun_with_other_settings_or_data_is_refused(synth, tmp_path):
    fixed = Counting(generate=lambda prompts, images, videos: ["2"] * len(prompts))
    out = str(tmp_path / "out")
    run_benchmark(EvalSettings("synth", str(synth), out, "m", limit=1, max_new_tokens=4), fixed, False)
    with pytest.raises(ConfigError, match="made with another max_new_tokens"):
        run_benchmark(EvalSettings("synth", str(synth), out, "m", limit=1, max_new_tokens=8), fixed, False)
    with pytest.raises(ConfigError, match="made with another model"):
        run_benchmark(EvalSettings("synth", str(synth), out, "m2", limit=1, max_new_tokens=4), fixed, False)
    other = _ai2d(tmp_path / "a"), _ai2d(tmp_path / "b")  # same ids, other files
    run_benchmark(EvalSettings("ai2d", str(other[0]), str(tmp_path / "ai2d"), "m"), fixed, False)
    with pytest.raises(ConfigError, match="made with another data"):
        run_benchmark(EvalSettings("ai2d", str(other[1]), str(tmp_path / "ai2d"), "m"), fixed, False)


def test_unknown_benchmark_and_missing_arguments(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown benchmark 'nope'; known benchmarks: docvqa, .*, synth"):
        run_eval(parse(["--benchmark", "nope", "--data", str(tmp_path)]))
    assert run_eval(parse(["--data", str(tmp_path)])) == 2
    assert "--benchmark" in capsys.readouterr().err


def _ai2d(root):
    from PIL import Image

    root.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(root / "1.png")
    records = [{"question": f"q{k}", "options": ["cat", "dog", "hen"], "answer": k % 3, "image": "1.png"}
               for k in range(3)]  # fmt: skip
    (root / "test.json").write_text(json.dumps(records))
    return root


def test_outputs_without_an_option_letter_are_wrong_and_counted(tmp_path):
    data = _ai2d(tmp_path)
    outputs = iter(["A", "I cannot tell from the picture", "The answer is (B)"])
    replies = Counting(generate=lambda prompts, images, videos: [next(outputs) for _ in prompts])
    summary = run_benchmark(EvalSettings("ai2d", str(data), str(tmp_path / "out"), "m"), replies, progress=False)
    assert summary["no_answer"] == 1 and summary["count"] == 3
    assert summary["score"] == pytest.approx(1 / 3)  # A right; no letter wrong; B for gold C wrong
    predictions = lines(tmp_path / "out" / PREDICTIONS)
    assert [(p["answer"], p["no_answer"], p["score"]) for p in predictions] == [
        ("A", False, 1.0), (None, True, 0.0), ("B", False, 0.0)
    ]  # fmt: skip
    assert "| all | 33.3 | 3 | 1 |" in (tmp_path / "out" / "report.md").read_text()


def test_compare_prints_side_by_side_and_plots(tmp_path, capsys):
    data = _ai2d(tmp_path)
    for name, answers in (("a", ["A", "A", "A"]), ("b", ["A", "B", "C"])):
        fixed = Counting(generate=lambda prompts, images, videos, answers=answers: answers[: len(prompts)])
        run_benchmark(EvalSettings("ai2d", str(data), str(tmp_path / name), f"model-{name}"), fixed, progress=False)
    out = tmp_path / "cmp"
    assert run_eval(parse(["--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("all "))
    assert row.split()[1:5] == ["33.3", "100.0", "+66.7", "3/3"]
    assert "A = model-a, B = model-b" in text
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG" and "compare.png" in (out / "compare.md").read_text()
    with pytest.raises(ConfigError, match="no summary.json"):
        run_eval(parse(["--compare", str(tmp_path / "a"), str(tmp_path), "--out", str(out)]))


# ---- video options -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rtl(tmp_path_factory):
    """An ActivityNet-RTL folder: two questions about one 24-frame video (25 fps, 0.96 s)."""
    root = tmp_path_factory.mktemp("data") / "anet"
    (root / "videos").mkdir(parents=True)
    write_video(root / "videos" / "v_abc.mp4", 24)
    records = [{"vid": "abc", "question": f"When is frame {k}?", "answer": "<0.1> <0.5>", "duration": 0.96,
                "question_id": f"abc_{k}"} for k in range(2)]  # fmt: skip
    (root / "annot_val_1_q229.json").write_text(json.dumps(records))
    return root


@pytest.fixture
def encoded(monkeypatch):
    """(prompt text without video tokens, chosen frame indices) of every conversation any processor encodes."""
    seen = []
    encode = NVILAProcessor.encode_messages

    def spy(self, *args, **kwargs):
        sample = encode(self, *args, **kwargs)
        ids = [i for i in sample.input_ids if i != self.config.video_token_id]
        seen.append((self.tokenizer.decode(ids), [frame_index(f) for v in sample.videos for f in v.frames]))
        return sample

    monkeypatch.setattr(NVILAProcessor, "encode_messages", spy)
    return seen


def test_video_options_choose_the_frames_and_write_their_times(checkpoint, rtl, tmp_path, encoded):
    def argv(out, *extra):
        return ["--model", str(checkpoint), "--benchmark", "activitynet_rtl", "--data", str(rtl), "--out", str(out),
                "--max-new-tokens", "2", "--no-progress", *extra]  # fmt: skip

    timed = tmp_path / "timed"
    assert run_eval(parse(argv(timed, "--frame-sampling", "linspace", "--video-timestamps"))) == 0
    assert [frames for _, frames in encoded] == [[0, 23], [0, 23]]  # round(linspace(0, 23, 2)): first and last
    prefix = timestamp_prefix([0 / RATE, 23 / RATE])  # "The video frames were sampled at 0.0s, 0.9s.\n"
    assert all(prefix in text and "When is frame" in text for text, _ in encoded)
    run = json.loads((timed / "run.json").read_text())
    assert (run["frame_sampling"], run["video_timestamps"]) == ("linspace", True)
    assert "frame_sampling=linspace, video_timestamps=True" in (timed / "report.md").read_text()
    with pytest.raises(ConfigError, match=r"another video_timestamps, frame_sampling \(video_timestamps=True, "):
        run_eval(parse(argv(timed)))  # the predictions depend on them: no mixing in one folder

    encoded.clear()
    assert run_eval(parse(argv(tmp_path / "plain"))) == 0
    assert [frames for _, frames in encoded] == [[6, 18], [6, 18]]  # segment centres (the default)
    assert not any("The video frames were sampled" in text for text, _ in encoded)
    assert "frame_sampling" not in (tmp_path / "plain" / "report.md").read_text()


def test_video_options_on_the_command_line(capsys):
    text = " ".join(_parser().format_help().split())
    assert "--frame-sampling {centres,linspace}" in text and "--video-timestamps" in text
    assert "video benchmarks only" in text and "--frame-sampling linspace --video-timestamps" in text
    args = parse(["--frame-sampling", "linspace", "--video-timestamps"])
    assert (args.frame_sampling, args.video_timestamps) == ("linspace", True)
    assert (parse([]).frame_sampling, parse([]).video_timestamps) == ("centres", False)
    with pytest.raises(SystemExit) as info:
        parse(["--frame-sampling", "random"])
    assert info.value.code == 2 and "invalid choice: 'random'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--frame-sampling must be one of centres, linspace; got 'uniform'"):
        EvalSettings("activitynet_rtl", "d", "o", "m", frame_sampling="uniform")


def test_run_json_without_video_options_resumes_as_the_defaults(rtl, tmp_path):
    fixed = Counting(generate=lambda prompts, images, videos: ["0 - 1 seconds"] * len(prompts))
    settings = EvalSettings("activitynet_rtl", str(rtl), str(tmp_path), "m")
    run_benchmark(settings, fixed, progress=False)
    run = json.loads((tmp_path / "run.json").read_text())
    del run["video_timestamps"], run["frame_sampling"]  # as written before these options existed
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert run_benchmark(settings, fixed, progress=False)["count"] == 2 and fixed.loads == 1  # resumed, not redone
    settings.frame_sampling = "linspace"
    with pytest.raises(ConfigError, match=r"another frame_sampling \(frame_sampling='centres'\)"):
        run_benchmark(settings, fixed, progress=False)
    (tmp_path / "run.json").write_text("{oops")
    with pytest.raises(ConfigError, match=r"run\.json:1:2: malformed JSON"):
        run_benchmark(settings, fixed, progress=False)


def test_video_options_without_videos_warn_and_do_not_block_a_resume(tmp_path, caplog):
    data = _ai2d(tmp_path)
    fixed = Counting(generate=lambda prompts, images, videos: ["A"] * len(prompts))
    timed = EvalSettings(
        "ai2d", str(data), str(tmp_path / "out"), "m", video_timestamps=True, frame_sampling="linspace"
    )
    run_benchmark(timed, fixed, progress=False)
    assert "no sample has a video; --video-timestamps / --frame-sampling change nothing" in caplog.text
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (run["frame_sampling"], run["video_timestamps"]) == ("centres", False)
    assert run_benchmark(EvalSettings("ai2d", str(data), str(tmp_path / "out"), "m"), fixed, False)["count"] == 3


def test_a_model_rewritten_in_place_is_not_resumed(synth, tmp_path):
    model = tmp_path / "ckpt"
    (model / "llm").mkdir(parents=True)
    weights = model / "llm" / "model.safetensors"
    weights.write_bytes(b"first weights")
    fixed = Counting(generate=lambda prompts, images, videos: ["2"] * len(prompts))
    settings = EvalSettings("synth", str(synth), str(tmp_path / "out"), str(model), limit=2)
    run_benchmark(settings, fixed, progress=False)
    assert run_benchmark(settings, fixed, progress=False)["count"] == 2 and fixed.loads == 1  # same files: resumed
    weights.write_bytes(b"retrained weights")  # e.g. a training run exported into the same folder again
    with pytest.raises(ConfigError, match="another model_files"):
        run_benchmark(settings, fixed, progress=False)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    del run["model_files"]  # a run.json written before fingerprints existed: not compared
    (tmp_path / "out" / "run.json").write_text(json.dumps(run))
    assert run_benchmark(settings, fixed, progress=False)["count"] == 2 and fixed.loads == 1
