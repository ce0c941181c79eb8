"""Answer targets point at where each answer is written and at the line number its question names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from nvila.data.dataset import ConversationDataset
from nvila.data.records import read_records
from nvila.synth import documents
from nvila.train.scene_targets import (
    READ_TEMPLATES,
    VALUE_TEMPLATES,
    SceneTargetDataset,
    answer_runs,
    answer_targets,
    box_tokens,
    digit_token_ids,
)
from nvila.train.word_loss import first_token, scene_text, word_targets

PAGE = (168, 168)  # the pages of `reading_data`: 3 x 3 tiles of the 56 px tiny model


@pytest.fixture(scope="module")
def records(reading_data) -> list:
    return read_records(reading_data)


def test_answer_runs_are_the_labelled_spans():
    assert answer_runs([-100, 5, 6, -100, -100, 7, -100, 8]) == [(1, 3), (5, 6), (7, 8)]
    assert answer_runs([-100, -100]) == []


def test_box_tokens_cover_the_words_centre_token(processor):
    cfg = processor.config
    scene = documents.make_document(np.random.default_rng(2), PAGE).scene
    for box in documents.text_boxes(scene):
        centre = word_targets([box], PAGE, cfg, (3, 3), {box[0]: 0})[0][0]
        tokens = box_tokens(box, PAGE, cfg, (3, 3))
        assert centre in tokens and tokens == sorted(tokens)
        assert len({t // 12 for t in tokens}) == 1  # one row of the 12 x 12 raster


@pytest.mark.parametrize("single_turns", [False, True])
def test_each_read_answer_points_at_its_written_word_and_its_line_number(records, processor, single_turns):
    dataset = ConversationDataset(records, processor, max_length=1024, single_turns=single_turns)
    items = SceneTargetDataset(dataset, processor, answers=True, centre=False)
    tokenizer, cfg = processor.tokenizer, processor.config
    digits = digit_token_ids(tokenizer)
    checked = numbered = 0
    for index, record in enumerate(records):
        scene_sample = items[index]
        templates = record.meta["templates"]
        read = [(t, a) for t, a in zip(templates, record.answers) if t in READ_TEMPLATES]
        assert len(scene_sample.answers) == len(read)  # every read answer is written on its page or chart
        sample, boxes = scene_sample.sample, scene_text(record.meta["template"], record.meta["scene"])
        asked = [m["content"] for m in record.messages if m["role"] == "user"]
        questions = [q for t, q in zip(templates, asked) if t in READ_TEMPLATES]
        for target, (_, answer), question in zip(scene_sample.answers, read, questions):
            word = answer.split()[0]
            assert sample.labels[target.at + 1] == target.token  # the position that predicts the answer
            assert answer.startswith(tokenizer.decode([target.token]).strip())
            where = {i for box in boxes if box[0] == word for i in box_tokens(box, PAGE, cfg, (3, 3))}
            assert set(target.written) == where and where
            assert target.seen[-1] == target.at and set(target.digits) <= set(target.seen)
            assert all(sample.input_ids[p] in digits for p in target.digits)
            number = re.search(r"\d+", question)
            assert tokenizer.decode([sample.input_ids[p] for p in target.digits]).strip() == (
                number.group() if number else ""
            )
            if sample.branches:  # a branch sees the shared prefix (the image) and itself, not the others
                own = next(s for s, e in sample.branches if s <= target.at < e)
                prefix = sample.branches[0][0]
                assert all(p < prefix or own <= p <= target.at for p in target.seen)
                assert set(range(prefix)) <= set(target.seen)
            else:
                assert target.seen == list(range(target.at + 1))
            checked += 1
            numbered += bool(number)
    assert checked >= 20 and numbered >= 5
    assert single_turns == any(items[i].sample.branches for i in range(len(records)))


def test_only_read_templates_get_answer_targets(records, processor):
    items = SceneTargetDataset(ConversationDataset(records, processor, max_length=1024), processor, answers=True)
    shapes = [i for i, r in enumerate(records) if r.meta["template"].startswith("shapes/")]
    counts = [i for i, r in enumerate(records) if set(r.meta["templates"]) <= {"documents/num_lines"}]
    assert shapes and all(items[i].answers == [] and items[i].words == [] for i in shapes)
    assert all(items[i].answers == [] for i in counts)


def test_words_and_answers_are_computed_only_when_asked(records, processor):
    dataset = ConversationDataset(records, processor, max_length=1024)
    page = next(i for i, r in enumerate(records) if r.meta["template"].startswith("documents/"))
    words_only = SceneTargetDataset(dataset, processor)[page]
    answers_only = SceneTargetDataset(dataset, processor, words=False, answers=True)[page]
    assert words_only.words and not words_only.answers
    assert answers_only.answers and not answers_only.words


def test_the_digit_tokens_hold_digits(processor):
    tokenizer = processor.tokenizer
    digits = digit_token_ids(tokenizer)
    assert {tokenizer(str(n), add_special_tokens=False).input_ids[0] for n in range(10)} <= digits
    assert tokenizer("line", add_special_tokens=False).input_ids[0] not in digits


def test_records_without_templates_get_no_answer_targets(records, processor):
    page = next(r for r in records if r.meta["template"].startswith("documents/"))
    bare = type(page)(page.id, page.source, page.messages, page.images, page.videos, {"scene": page.meta["scene"]})
    bare.meta["template"] = page.meta["template"]
    items = SceneTargetDataset(ConversationDataset([bare], processor, max_length=1024), processor, answers=True)
    assert items[0].answers == [] and items[0].words
    assert Path(page.images[0]).is_file()


def test_a_centre_address_is_the_word_losss_token_of_each_box_holding_the_word(records, processor):
    cfg, digits = processor.config, digit_token_ids(processor.tokenizer)
    record = next(r for r in records if r.meta["template"].startswith("documents/"))
    sample = ConversationDataset([record], processor, max_length=1024)[0]
    boxes = scene_text(record.meta["template"], record.meta["scene"])
    args = (sample, record.meta["templates"], record.answers, boxes, PAGE, cfg, digits)
    along, centred = answer_targets(*args, centre=False), answer_targets(*args, centre=True)
    assert along and len(along) == len(centred)
    for wide, narrow, answer in zip(
        along, centred, [a for t, a in zip(record.meta["templates"], record.answers) if t in READ_TEMPLATES]
    ):
        word = answer.split()[0]
        held = [box for box in boxes if box[0] == word]
        assert narrow.written == sorted({i for i, _ in word_targets(held, PAGE, cfg, (3, 3), {word: 0})})
        assert set(narrow.written) <= set(wide.written)


def test_spelled_answers_read_every_written_word_at_its_first_and_second_token(records, processor):
    dataset = ConversationDataset(records, processor, max_length=1024)
    plain = SceneTargetDataset(dataset, processor, words=False, answers=True)
    spelled = SceneTargetDataset(dataset, processor, words=False, answers=True, spell=True)
    tokenizer, cfg = processor.tokenizer, processor.config
    counted = {"second tokens": 0, "later words": 0}
    for index, record in enumerate(records):
        sample, boxes = dataset[index], scene_text(record.meta["template"], record.meta["scene"])
        written = {box[0] for box in boxes}
        expected, firsts = [], []
        for (start, _), template, answer in zip(answer_runs(sample.labels), record.meta["templates"], record.answers):
            if template not in READ_TEMPLATES or answer.split()[0] not in written:
                continue
            position = start
            for j, word in enumerate(answer.split()):
                ids = tokenizer((" " if j else "") + word, add_special_tokens=False).input_ids
                if word in written:
                    expected.append((position - 1, first_token(tokenizer, word), 0, word))
                    firsts += expected[-1:] if j == 0 else []
                    counted["later words"] += j > 0
                    if len(ids) > 1:
                        expected.append((position, ids[1], 1, word))
                        counted["second tokens"] += 1
                position += len(ids)
        targets = spelled[index].answers
        assert [(t.at, t.token, t.head) for t in targets] == [e[:3] for e in expected]
        for target, (*_, word) in zip(targets, expected):
            held = [box for box in boxes if box[0] == word]
            assert target.written == sorted({i for i, _ in word_targets(held, PAGE, cfg, (3, 3), {word: 0})})
            assert sample.labels[target.at + 1] == target.token or target.head == 0  # a later word: " W" vs "W"
        # an answer's first token is read as without `spell` (the stages before it)
        assert [(t.at, t.token, t.written) for t in plain[index].answers] == [
            (t.at, t.token, t.written) for t in targets if (t.at, t.token, t.head) in {f[:3] for f in firsts}
        ]
    assert counted["second tokens"] >= 10 and counted["later words"] >= 1, counted


def test_question_words_point_at_the_label_the_question_names(records, processor):
    dataset = ConversationDataset(records, processor, max_length=1024, single_turns=True)
    items = SceneTargetDataset(dataset, processor, words=False, answers=True, question_words=True)
    tokenizer = processor.tokenizer
    labels = 0
    for index, record in enumerate(records):
        written = {box[0] for box in scene_text(record.meta["template"], record.meta["scene"])}
        asked = [m["content"] for m in record.messages if m["role"] == "user"]
        read = [q for t, q in zip(record.meta["templates"], asked) if t in READ_TEMPLATES]
        sample = items[index].sample
        for target, question in zip(items[index].answers, read):
            named = [w for w in re.findall(r"\w+", question) if w.isdigit() or w in written]
            pointed = tokenizer.decode([sample.input_ids[p] for p in target.digits])
            assert pointed.replace(" ", "") == "".join(named), (question, pointed)
            labels += any(not w.isdigit() for w in named)
    assert labels >= 3


def test_columns_pair_each_chart_label_with_the_value_above_it_and_values_are_read_at_the_label(records, processor):
    dataset = ConversationDataset(records, processor, max_length=1024)
    plain = SceneTargetDataset(dataset, processor, answers=True, spell=True)
    columned = SceneTargetDataset(dataset, processor, answers=True, spell=True, columns=True)
    cfg, values = processor.config, 0
    for index, record in enumerate(records):
        template = record.meta["template"]
        if not template.startswith("charts/"):
            assert columned[index].columns == []
            continue
        scene = record.meta["scene"]
        items = scene["bars"] if scene["kind"] == "bar" else scene["points"]
        boxes = scene_text(template, scene)
        centre = {box[0]: word_targets([box], PAGE, cfg, (3, 3), {box[0]: 0})[0][0] for box in boxes}

        expected = [(centre[item["label"]], centre[str(item["value"])]) for item in items]
        assert columned[index].columns == expected and all(label > value for label, value in expected)
        label_of = {str(item["value"]): item["label"] for item in items}
        runs = answer_runs(dataset[index].labels)
        before, after = plain[index].answers, columned[index].answers
        assert [(a.at, a.token, a.head) for a in before] == [(a.at, a.token, a.head) for a in after]
        for old, new in zip(before, after):
            turn = next(k for k, (start, end) in enumerate(runs) if start <= new.at + 1 < end)
            if record.meta["templates"][turn] in VALUE_TEMPLATES:  # addressed at the label, not the value
                assert new.written == [centre[label_of[record.answers[turn]]]] != old.written
                values += 1
            else:
                assert new.written == old.written
    assert values >= 3
