"""Benchmark loaders on small files written in each benchmark's published format, their errors, the registry's
prompts and the scorers (no model)."""

from __future__ import annotations

import json
import sys

import pytest
from PIL import Image

from nvila.errors import ConfigError
from nvila.eval.benchmarks import BENCHMARKS, get_benchmark, score_choice, score_interval, score_synth
from nvila.eval.loaders import (
    EvalSample,
    load_activitynet_rtl,
    load_ai2d,
    load_chartqa,
    load_docvqa,
    load_infovqa,
    load_synth,
    load_textvqa,
    load_videomme,
    load_vqav2,
    parse_interval,
    read_parquet,
)


def _image(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def _json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ---- DocVQA / InfographicVQA / TextVQA ------------------------------------------------------------------------
def test_docvqa_reads_the_official_val_json(tmp_path):
    _image(tmp_path / "documents" / "abc_1.png")
    _json(
        tmp_path / "val_v1.0.json",
        {
            "dataset_name": "docvqa",
            "dataset_split": "val",
            "data": [
                {"questionId": 49153, "question": "What is the date?", "question_types": ["form"],
                 "image": "documents/abc_1.png", "docId": 14465, "answers": ["1/8/93", "January 8, 1993"]},
            ],
        },
    )  # fmt: skip
    [sample] = load_docvqa(tmp_path)
    assert sample.id == "49153"
    assert sample.answers == ["1/8/93", "January 8, 1993"]
    assert sample.images == [tmp_path / "documents" / "abc_1.png"]
    prompt = get_benchmark("docvqa").format_prompt(sample)
    assert prompt == "What is the date?\nAnswer the question using a single word or phrase."
    assert get_benchmark("docvqa").score("1/8/93", sample).value == 1.0


def test_docvqa_missing_field_names_file_record_and_field(tmp_path):
    _image(tmp_path / "documents" / "a.png")
    good = {"questionId": 1, "question": "q", "image": "documents/a.png", "answers": ["x"]}
    _json(tmp_path / "val_v1.0.json", {"data": [good, {"questionId": 2, "question": "q", "image": "documents/a.png"}]})
    with pytest.raises(ConfigError, match=r"val_v1\.0\.json: record 1 has no field 'answers'"):
        load_docvqa(tmp_path)


def test_docvqa_missing_image_and_missing_file(tmp_path):
    _json(tmp_path / "val_v1.0.json", {"data": [{"questionId": 1, "question": "q", "image": "documents/no.png",
                                                 "answers": ["x"]}]})  # fmt: skip
    with pytest.raises(ConfigError, match=r"val_v1\.0\.json: record 0: media file 'documents/no\.png' not found"):
        load_docvqa(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"docvqa: no val_v1\.0_withQT\.json or val_v1\.0\.json in"):
        load_docvqa(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        load_docvqa(tmp_path / "nowhere")


def test_malformed_benchmark_files_name_the_line_and_column(tmp_path):
    (tmp_path / "val_v1.0.json").write_text('{"data": [\n  {"questionId": 1,}\n]}')
    with pytest.raises(ConfigError, match=r"val_v1\.0\.json:2:20: malformed JSON \(Expecting property name"):
        load_docvqa(tmp_path)
    (tmp_path / "heldout.jsonl").write_text('{"id": 1}\n{"id": 2\n')
    with pytest.raises(ConfigError, match=r"heldout\.jsonl:2:9: malformed JSON"):
        load_synth(tmp_path)


def test_infovqa_uses_image_local_name(tmp_path):
    _image(tmp_path / "infographicsvqa_images" / "20471.jpeg")
    _json(
        tmp_path / "infographicsVQA_val_v1.0_withQT.json",
        {"data": [{"questionId": 65718, "question": "Which year?", "image_local_name": "20471.jpeg",
                   "ocr_output_file": "20471.json", "answers": ["2016"], "answer_type": ["single span"]}]},
    )  # fmt: skip
    [sample] = load_infovqa(tmp_path)
    assert sample.images == [tmp_path / "infographicsvqa_images" / "20471.jpeg"]
    assert get_benchmark("infovqa").score("2015", sample).value == pytest.approx(0.75)  # ANLS: 1 edit of 4


def test_textvqa_reads_ten_answers_and_finds_train_images(tmp_path):
    _image(tmp_path / "train_images" / "0054c91397f2fe05.jpg")
    answers = ["nokia"] * 7 + ["toshiba"] * 3
    _json(
        tmp_path / "TextVQA_0.5.1_val.json",
        {"dataset_type": "val", "data": [{"question_id": 34602, "question": "what is the brand?",
                                          "image_id": "0054c91397f2fe05", "answers": answers}]},
    )  # fmt: skip
    [sample] = load_textvqa(tmp_path)
    assert sample.id == "34602" and len(sample.answers) == 10
    assert sample.images == [tmp_path / "train_images" / "0054c91397f2fe05.jpg"]
    bench = get_benchmark("textvqa")
    assert bench.score("Nokia", sample).value == 1.0
    assert bench.score("toshiba", sample).value == pytest.approx(0.9)  # 3 matches: 0.9 in the VQA formula


def test_textvqa_missing_image_id(tmp_path):
    _json(tmp_path / "TextVQA_0.5.1_val.json", {"data": [{"question_id": 1, "question": "q", "answers": ["a"]}]})
    with pytest.raises(ConfigError, match=r"TextVQA_0\.5\.1_val\.json: record 0 has no field 'image_id'"):
        load_textvqa(tmp_path)


# ---- ChartQA / VQAv2 ------------------------------------------------------------------------------------------
def test_chartqa_reads_both_splits_as_subtasks(tmp_path):
    _image(tmp_path / "test" / "png" / "41699051005347.png")
    _image(tmp_path / "test" / "png" / "multi_col_1.png")
    _json(tmp_path / "test" / "test_human.json", [{"imgname": "41699051005347.png", "query": "Max value?",
                                                   "label": "45"}])  # fmt: skip
    _json(tmp_path / "test" / "test_augmented.json", [{"imgname": "multi_col_1.png", "query": "Colour?",
                                                       "label": "Blue"}])  # fmt: skip
    samples = load_chartqa(tmp_path)
    assert [(s.id, s.task, s.answers) for s in samples] == [("human-0", "human", ["45"]),
                                                           ("augmented-0", "augmented", ["Blue"])]  # fmt: skip
    bench = get_benchmark("chartqa")
    assert bench.score("46.5", samples[0]).value == 1.0  # within 5 %
    assert bench.score("48", samples[0]).value == 0.0
    assert bench.score("blue", samples[1]).value == 1.0


def test_chartqa_missing_label(tmp_path):
    _image(tmp_path / "png" / "a.png")
    _json(tmp_path / "test_human.json", [{"imgname": "a.png", "query": "q"}])
    with pytest.raises(ConfigError, match=r"test_human\.json: record 0 has no field 'label'"):
        load_chartqa(tmp_path)
    with pytest.raises(ConfigError, match="no test_human.json or test_augmented.json"):
        load_chartqa(tmp_path / "png")


def _vqav2_files(root, with_annotation=True):
    _image(root / "val2014" / "COCO_val2014_000000000042.jpg")
    questions = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
                 "questions": [{"image_id": 42, "question": "How many dogs?", "question_id": 42000}]}  # fmt: skip
    answers = [{"answer": "2", "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)]
    annotations = {"annotations": [{"question_type": "how many", "multiple_choice_answer": "2", "answers": answers,
                                    "image_id": 42, "answer_type": "number", "question_id": 42000}]}  # fmt: skip
    if not with_annotation:
        annotations["annotations"][0]["question_id"] = 1
    _json(root / "v2_OpenEnded_mscoco_val2014_questions.json", questions)
    _json(root / "v2_mscoco_val2014_annotations.json", annotations)


def test_vqav2_joins_questions_and_annotations(tmp_path):
    _vqav2_files(tmp_path)
    [sample] = load_vqav2(tmp_path)
    assert (sample.id, sample.task, sample.answers) == ("42000", "number", ["2"] * 10)
    assert sample.images == [tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"]
    assert get_benchmark("vqav2").score("two", sample).value == 1.0


def test_vqav2_fields_of_the_wrong_kind_are_named(tmp_path):
    _vqav2_files(tmp_path)
    path = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    questions = json.loads(path.read_text())
    questions["questions"][0]["image_id"] = "forty-two"
    _json(path, questions)
    with pytest.raises(
        ConfigError, match=r"questions\.json: record 0: field 'image_id' must be a number, got 'forty-two'"
    ):
        load_vqav2(tmp_path)
    _json(path, {**questions, "questions": 5})
    with pytest.raises(ConfigError, match=r"the top-level object: field 'questions' must be a list, got int"):
        load_vqav2(tmp_path)


def test_vqav2_question_without_annotation(tmp_path):
    _vqav2_files(tmp_path, with_annotation=False)
    with pytest.raises(ConfigError, match="no annotation for question_id 42000"):
        load_vqav2(tmp_path)


# ---- multiple choice -----------------------------------------------------------------------------------------
def test_ai2d_json_with_index_and_letter_answers(tmp_path):
    _image(tmp_path / "images" / "1.png")
    _json(
        tmp_path / "test.json",
        [
            {"question": "Which is a producer?", "options": ["fox", "grass", "hawk", "snake"], "answer": "1",
             "image": "images/1.png"},
            {"question": "What eats grass?", "options": ["rabbit", "sun"], "answer": "A", "image": "images/1.png"},
        ],
    )  # fmt: skip
    samples = load_ai2d(tmp_path)
    assert [s.answers for s in samples] == [["B"], ["A"]]
    assert samples[0].options == ["fox", "grass", "hawk", "snake"]
    prompt = get_benchmark("ai2d").format_prompt(samples[0])
    assert prompt == (
        "Which is a producer?\nA. fox\nB. grass\nC. hawk\nD. snake\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert score_choice("B", samples[0]).value == 1.0
    assert score_choice("grass", samples[0]).answer == "B"  # the option text alone names it


def test_ai2d_bad_answer_names_the_field(tmp_path):
    _image(tmp_path / "1.png")
    _json(tmp_path / "test.json", [{"question": "q", "options": ["a", "b"], "answer": "7", "image": "1.png"}])
    with pytest.raises(ConfigError, match=r"test\.json: record 0: field 'answer' must be an option letter or index"):
        load_ai2d(tmp_path)


def test_ai2d_parquet_with_inline_image_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is an optional dependency (parquet benchmarks)")
    import io

    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    table = pa.table(
        {
            "question": ["Which?"],
            "options": [["x", "y", "z"]],
            "answer": ["2"],
            "image": [{"bytes": buffer.getvalue(), "path": "1.png"}],
        }
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "test-00000-of-00001.parquet")
    [sample] = load_ai2d(tmp_path)
    assert sample.answers == ["C"] and sample.options == ["x", "y", "z"]
    assert sample.images[0][:4] == b"\x89PNG"


def test_parquet_without_pyarrow_or_pandas_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigError, match=r"x\.parquet: reading parquet needs pyarrow or pandas"):
        read_parquet(tmp_path / "x.parquet")


def test_videomme_strips_option_letters_and_finds_videos(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fFjv93ACGo8.mp4").write_bytes(b"\0")
    record = {
        "video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
        "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem",
        "question": "How many red socks?", "options": ["A. 2.", "B. 3.", "C. 4.", "D. 5."], "answer": "C",
    }  # fmt: skip
    _json(tmp_path / "videomme.json", [record])
    [sample] = load_videomme(tmp_path)
    assert (sample.id, sample.task, sample.answers) == ("001-1", "short", ["C"])
    assert sample.options == ["2.", "3.", "4.", "5."]
    assert sample.videos == [tmp_path / "data" / "fFjv93ACGo8.mp4"]
    prompt = get_benchmark("videomme").format_prompt(sample)
    assert "How many red socks?\nA. 2.\nB. 3.\nC. 4.\nD. 5.\nThe best answer is:" in prompt
    assert sample.meta["task_type"] == "Counting Problem"
    record["videoID"] = "missing"
    _json(tmp_path / "videomme.json", [record])
    with pytest.raises(ConfigError, match=r"videomme\.json: record 0: no video missing\.mp4"):
        load_videomme(tmp_path)


# ---- localization ----------------------------------------------------------------------------------------------
def test_activitynet_rtl_reads_tagged_timestamps(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v_abc.mp4").write_bytes(b"\0")
    _json(
        tmp_path / "annot_val_1_q229.json",
        [{"vid": "abc", "question": "When does the man jump?", "answer": "<10.0> <20.0> He jumps over the bar.",
          "duration": 60.0, "question_id": "abc_0"}],
    )  # fmt: skip
    [sample] = load_activitynet_rtl(tmp_path)
    assert sample.meta["interval"] == [10.0, 20.0] and sample.videos == [tmp_path / "videos" / "v_abc.mp4"]
    assert score_interval("15 - 25 seconds", sample).value == pytest.approx(5 / 15)
    assert score_interval("<10> <20>", sample).value == 1.0
    unread = score_interval("he jumps", sample)
    assert unread.value == 0.0 and unread.answer is None


def test_activitynet_rtl_answer_without_timestamps(tmp_path):
    (tmp_path / "v_abc.mp4").write_bytes(b"\0")
    _json(tmp_path / "annot_val_1_q229.json", [{"vid": "abc", "question": "q", "answer": "never", "duration": 5}])
    with pytest.raises(ConfigError, match="record 0: field 'answer' has no two timestamps"):
        load_activitynet_rtl(tmp_path)


@pytest.mark.parametrize("duration", ["long", 0, -5, [60]])
def test_activitynet_rtl_duration_must_be_a_positive_number(tmp_path, duration):
    (tmp_path / "v_abc.mp4").write_bytes(b"\0")
    record = {"vid": "abc", "question": "q", "answer": "<1> <2>", "duration": duration}
    _json(tmp_path / "annot_val_1_q229.json", [record])
    with pytest.raises(ConfigError, match=r"record 0: field 'duration' must be a positive number, got "):
        load_activitynet_rtl(tmp_path)


def test_parse_interval():
    assert parse_interval("1.5 - 3.0 seconds") == (1.5, 3.0)
    assert parse_interval("from 30 s to 12.5 s") == (12.5, 30.0)  # ordered
    assert parse_interval("<90> <2>", duration=60) == (2.0, 60.0)  # clamped to the duration
    assert parse_interval("at 4 seconds") is None


# ---- synth ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from nvila.synth.writer import write_dataset

    root = tmp_path_factory.mktemp("synth") / "ds"
    write_dataset(root, {"documents": 3, "shapes": 3}, seed=3, image_size=64, heldout={"documents": 2, "shapes": 2},
                  max_questions=3, progress=False, workers=1)  # fmt: skip
    return root


def test_synth_one_sample_per_answer(synth_dir):
    records = [json.loads(line) for line in (synth_dir / "heldout.jsonl").read_text().splitlines()]
    samples = load_synth(synth_dir)
    assert len(samples) == sum(len(r["conversations"]) // 2 for r in records)
    first = samples[0]
    assert first.id == f"{records[0]['id']}#0" and first.task == records[0]["source"]
    assert first.question == records[0]["conversations"][0]["value"]  # worded as the first training turn
    assert all(s.question.startswith("<image>\n") and s.question.count("<image>") == 1 for s in samples)
    assert first.meta["template"] == records[0]["meta"]["templates"][0]
    assert first.images == [synth_dir / records[0]["image"]]


def test_synth_scoring_normalises_per_source():
    shapes = EvalSample("s#0", "q", ["3"], task="shapes")
    assert score_synth("Three.", shapes).value == 1.0
    assert score_synth("4", shapes).value == 0.0
    documents = EvalSample("d#0", "q", ["Drawer Pot"], task="documents")
    assert score_synth("drawer  pot.", documents).value == 1.0
    assert score_synth("drawer pots", documents).value == 0.0
    charts = EvalSample("c#0", "q", ["39"], task="charts")
    assert score_synth("39.0", charts).value == 1.0
    events = EvalSample("e#0", "q", ["4.5 - 6.0 seconds"], task="events", meta={"duration": 7.0})
    assert score_synth("4.5 - 6.0 seconds", events).value == 1.0
    assert score_synth("5.25 - 6.0 seconds", events).value == pytest.approx(0.5)
    empty = score_synth("  ", shapes)
    assert empty.value == 0.0 and empty.answer is None


def test_synth_missing_field(tmp_path):
    _image(tmp_path / "images" / "a.png")
    (tmp_path / "heldout.jsonl").write_text(json.dumps({"id": "x", "source": "shapes", "image": "images/a.png"}) + "\n")
    with pytest.raises(ConfigError, match=r"heldout\.jsonl: record 0 has no field 'conversations'"):
        load_synth(tmp_path)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"conversations": "q?"}, "field 'conversations' must be a list, got str"),
        ({"conversations": ["q?", "a"]}, "conversations must be a list of {'from', 'value'} objects"),
        ({"meta": [1]}, "field 'meta' must be an object, got list"),
        ({"meta": {"duration": "7 s"}}, "field 'meta.duration' must be a positive number, got '7 s'"),
        ({"image": 3}, "field 'image' must be a list, got int"),
    ],
)
def test_synth_records_of_the_wrong_shape_are_named(tmp_path, change, words):
    _image(tmp_path / "images" / "a.png")
    turns = [{"from": "human", "value": "<image>\nq?"}, {"from": "gpt", "value": "a"}]
    record = {"id": "x", "source": "shapes", "image": "images/a.png", "conversations": turns, **change}
    (tmp_path / "heldout.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError, match=r"heldout\.jsonl: record 0: ") as info:
        load_synth(tmp_path)
    assert words in str(info.value)


def test_unknown_benchmark_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown benchmark 'mmmu'; known benchmarks: docvqa, .*synth"):
        get_benchmark("mmmu")
    assert {"docvqa", "infovqa", "textvqa", "chartqa", "ai2d", "vqav2", "videomme", "activitynet_rtl", "synth"} <= set(
        BENCHMARKS
    )
