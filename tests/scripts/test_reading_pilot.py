"""scripts/reading_pilot.py: the questions it asks per kind, and a short run that trains with the word loss."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from nvila.synth import documents


@pytest.fixture(scope="module")
def pilot(load_script):
    return load_script("reading_pilot")


def test_questions_per_kind(pilot):
    scene = documents.make_document(np.random.default_rng(3), pilot.PAGE).scene
    lines = scene["lines"]
    assert len(lines) >= 3
    first = pilot.asked(scene, ["first:2"])
    assert first == [(f"What is the first word of line {i}?", lines[i - 1][0], f"line {i}") for i in (1, 2)]
    assert len(pilot.asked(scene, ["first"])) == len(lines)
    last = pilot.asked(scene, ["last", "title"])
    assert last[-1] == ("What is the title?", scene["title"], "title")
    assert [a for _, a, k in last if k == "last"] == [w[-1] for w in lines if len(w) > 1]


def test_a_short_run_reports_both_losses_and_both_splits(pilot, monkeypatch, capsys):
    argv = ["reading_pilot.py", "--pages", "6", "--test-pages", "2", "--steps", "2", "--eval-every", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--batch", "4", "--word-loss", "1", "--questions", "first:2,title"])
    pilot.main()
    report = capsys.readouterr().out.splitlines()[-1]
    found = re.match(r"step 2 loss ([\d.]+) word loss ([\d.]+) \| train: (.*) \| fresh: (.*) \| \d+ s", report)
    assert found, report
    loss, word = float(found.group(1)), float(found.group(2))
    assert word > 0 and loss > word  # the answers' loss is added to the weighted word loss
    for split in (found.group(3), found.group(4)):
        assert re.fullmatch(r"line 1 [\d.]+%, line 2 [\d.]+%, title [\d.]+%, words [\d.]+%", split), split


@pytest.mark.parametrize("kinds", ["second", "first:0", "first:x", ","])
def test_unknown_question_kinds_are_refused(pilot, monkeypatch, capsys, kinds):
    monkeypatch.setattr(sys, "argv", ["reading_pilot.py", "--questions", kinds])
    with pytest.raises(SystemExit):
        pilot.main()
    assert "question kinds" in capsys.readouterr().err


def test_centre_and_train_tower_are_refused_together(pilot, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["reading_pilot.py", "--centre", "2", "--train-tower", "1"])
    with pytest.raises(SystemExit):
        pilot.main()


def test_a_curriculum_trains_its_stages_in_turn_and_saves_a_loadable_model(pilot, monkeypatch, capsys, tmp_path):
    from nvila import loader

    argv = ["reading_pilot.py", "--pages", "6", "--test-pages", "2", "--batch", "4", "--eval-every", "100"]
    stages = ["--curriculum", "first:1@2", "title,first:2@3", "--score", "first:3"]
    monkeypatch.setattr(sys, "argv", [*argv, *stages, "--save", str(tmp_path / "model")])
    pilot.main()
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out if line.startswith("stage ")] == ["stage first", "stage title+first"]
    reports = [line for line in out if line.startswith("step ")]
    assert [line.split()[1] for line in reports] == ["2", "5"]  # the end of each stage
    assert all("line 3" in line for line in reports)  # the questions scored, not the stage's
    trained, _ = loader.load(tmp_path / "model")
    start, _ = loader.load(pilot.DEFAULT_MODEL)
    pairs = zip(trained.mm_projector.parameters(), start.mm_projector.parameters())
    assert any((a - b).abs().max() > 0 for a, b in pairs)  # the trained weights, not the starting ones, were written


@pytest.mark.parametrize("stage", ["first", "first@0", "first@x", "second@10"])
def test_bad_curriculum_stages_are_refused(pilot, monkeypatch, capsys, stage):
    monkeypatch.setattr(sys, "argv", ["reading_pilot.py", "--curriculum", stage])
    with pytest.raises(SystemExit):
        pilot.main()
    err = capsys.readouterr().err
    assert "curriculum stage" in err or "question kinds" in err


@pytest.mark.parametrize(
    ("arm", "tokens"),
    [
        ([], 324),  # the shipped Dynamic-S2 64/192/384, 3x3: 6 x 6 tiles of ceil(8 / 3) = 3 tokens a side: 18 x 18
        (["--resize", "--projector", "2x2"], 16),  # one 64 px tile, 2 x 2 merged: 4 x 4
        (["--scales", "64,128,192", "--projector", "2x2"], 144),  # 3 x 3 tiles of 8 x 8 patches, 2 x 2 merged
        (["--scales", "64,128,192", "--projector", "3x3"], 81),  # 3 x 3 tiles of 3 x 3 tokens: 9 x 9
    ],
)
def test_table_1_arms_change_the_tokens_a_page(pilot, monkeypatch, capsys, arm, tokens):
    argv = ["reading_pilot.py", "--pages", "4", "--test-pages", "2", "--batch", "4", "--steps", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--word-loss", "1", "--questions", "first:1,lines", *arm])
    pilot.main()
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{tokens} image tokens a page (") for line in out), out
    report = re.match(r"step 2 loss ([\d.]+) word loss ([\d.]+) \| train: line 1 [\d.]+%, lines [\d.]+%", out[-1])
    assert report and float(report.group(2)) > 0, out[-1]


def test_answers_are_scored_turn_by_turn(pilot):
    import types

    import torch

    labels = torch.tensor([[-100, 5, 6, -100, -100, 7, 2, -100]])
    predicted = [5, 9, 0, 0, 7, 2, 0]  # at position t the model predicts token t + 1: the 6 is missed
    logits = torch.nn.functional.one_hot(torch.tensor([predicted + [0]]), 10).float()
    assert pilot.answered(types.SimpleNamespace(logits=logits), labels) == [[False, True]]


def test_conversations_hold_every_question_once_with_the_page_once(pilot):
    from nvila import loader

    _, processor = loader.load(pilot.DEFAULT_MODEL)
    rng = np.random.default_rng(4)
    scenes = [documents.make_document(rng, pilot.PAGE).scene for _ in range(3)]
    pages = pilot.Pages(scenes, None, None, (3, 3))
    chats = pilot.conversations(processor, pages, ["first", "title"], 4, np.random.default_rng(0))
    image_token = processor.config.image_token_id
    for k, scene in enumerate(scenes):
        mine = [c for c in chats if c.page == k]
        assert all(1 <= len(c.kinds) <= 4 and c.input_ids.count(image_token) == 324 for c in mine)
        assert sorted(kind for c in mine for kind in c.kinds) == sorted(["title"] + ["first"] * len(scene["lines"]))
        answers = [processor.tokenizer.decode([t for t in c.labels if t != -100]) for c in mine]
        assert all(scene["title"] in a or any(w[0] in a for w in scene["lines"]) for a in answers)


def test_a_batch_holds_at_least_the_questions_asked_for(pilot):
    chats = [pilot.Conversation(k, [], [], ["first"] * n) for k, n in enumerate([1, 3, 8, 8, 2, 5])]
    for wanted in (1, 9, 20, 27, 100):
        batch = pilot.draw_batch(chats, wanted, np.random.default_rng(wanted))
        held = [len(c.kinds) for c in batch]
        assert len({c.page for c in batch}) == len(batch)  # no conversation twice
        assert sum(held) >= min(wanted, 27) and sum(held[:-1]) < wanted  # the last one was needed


def test_shared_tokens_counts_lines_the_raster_cannot_tell_apart(pilot):
    from nvila import loader

    model, _ = loader.load(pilot.DEFAULT_MODEL)
    cfg = model.nvila_config  # an 18 x 18 raster over a 192 px page: 10.7 px token rows
    scene = documents.make_document(np.random.default_rng(0), pilot.PAGE).scene
    lines = [["cat", "dog"], ["box", "egg", "pen"], ["ear"]]
    apart = {**scene, "lines": lines, "top": 20, "line_height": 40}
    assert pilot.shared_tokens([apart], cfg, (3, 3)) == (0.0, 0.0)
    together = {**apart, "line_height": 0}  # every line drawn over the first
    first, words = pilot.shared_tokens([together], cfg, (3, 3))
    assert first == 1.0 and 0 < words <= 1.0


def test_steps_0_reports_the_geometry_only(pilot, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reading_pilot.py", "--test-pages", "20", "--steps", "0"])
    pilot.main()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("324 image tokens a page (18 x 18); on the fresh pages"), out


def test_questions_sharing_one_image_are_computed_as_if_asked_alone(pilot):
    import torch

    from nvila import loader

    model, processor = loader.load(pilot.DEFAULT_MODEL)
    model.float().eval()
    pages = pilot.draw_pages(model, processor, 2, 5, pixels=False)
    pad = processor.pad_token_id
    alone = pilot.conversations(processor, pages, ["first", "title"], 1, np.random.default_rng(0))
    rows = pilot.conversations(processor, pages, ["first", "title"], 1, np.random.default_rng(0), share=4)
    assert len(rows) < len(alone) and sum(len(r.kinds) for r in rows) == len(alone)
    image_token = processor.config.image_token_id
    assert all(r.input_ids.count(image_token) == 324 for r in rows)  # the image once a row

    def answer_logits(chats):
        """{(page, answer ids): the logits that predict them}"""
        with torch.no_grad():
            out, _, labels = pilot.forward(model, pages, chats, pad, False)
        found = {}
        for r, c in enumerate(chats):
            wanted = labels[r, 1:]
            for start, end in c.branches or [(0, len(c.input_ids))]:
                at = [t for t in range(start, end - 1) if wanted[t] != -100]
                assert at and (start == 0 or labels[r, start] == -100)
                found[(c.page, tuple(wanted[at].tolist()))] = out.logits[r, at]
        return found

    single, shared = answer_logits(alone), answer_logits(rows)
    assert single.keys() == shared.keys()
    for key, logits in single.items():
        torch.testing.assert_close(shared[key], logits, atol=1e-4, rtol=1e-4)


def test_turns_and_share_are_refused_together(pilot, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reading_pilot.py", "--turns", "2", "--share", "2"])
    with pytest.raises(SystemExit):
        pilot.main()
    assert "choose one" in capsys.readouterr().err


def test_scores_are_reported_line_by_line_in_number_order(pilot):
    kinds = ["words", "title", "line 10", "line 2", "lines", "line 1"]
    assert sorted(kinds, key=pilot.report_order) == ["line 1", "line 2", "line 10", "lines", "title", "words"]


def test_a_run_with_every_supervised_hop_reports_them(pilot, monkeypatch, capsys):
    argv = ["reading_pilot.py", "--pages", "4", "--test-pages", "2", "--steps", "2", "--eval-every", "2"]
    hops = [
        "--address-loss",
        "1",
        "--number-loss",
        "1",
        "--copy-loss",
        "1",
        "--share",
        "4",
        "--questions",
        "first:2,title",
    ]
    hops += ["--word-loss", "1", "--word-layer", "1", "--address-centre"]
    monkeypatch.setattr(sys, "argv", [*argv, "--batch", "6", *hops])
    pilot.main()
    report = capsys.readouterr().out.splitlines()[-1]
    assert re.match(
        r"step 2 loss [\d.]+ word loss [\d.]+ addressed [\d.]+% on the number [\d.]+% copied [\d.]+% "
        r"named at layer 1 [\d.]+% \| train",
        report,
    )


def test_the_number_loss_needs_a_layer_before_the_address(pilot, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reading_pilot.py", "--number-loss", "1", "--address-layer", "0"])
    with pytest.raises(SystemExit):
        pilot.main()
    assert "--number-loss" in capsys.readouterr().err


def test_conversations_carry_the_reading_targets_of_their_questions(pilot):
    from nvila import loader

    model, processor = loader.load(pilot.DEFAULT_MODEL)
    pages = pilot.draw_pages(model, processor, 2, 5, pixels=False)
    for share in (1, 4):
        chats = pilot.conversations(processor, pages, ["first:2", "title", "lines"], 1, np.random.default_rng(0), share)
        for chat in chats:
            read = [k for k in chat.kinds if k != "lines"]  # a line count is not read off the page
            assert len(chat.answers) == len(read)
            numbered = [a for a in chat.answers if a.digits]
            assert len(numbered) == sum(k.startswith("line ") for k in read)


def test_the_centre_address_is_one_token_of_the_words_tokens(pilot):
    from nvila import loader

    model, processor = loader.load(pilot.DEFAULT_MODEL)
    pages = pilot.draw_pages(model, processor, 2, 5, pixels=False)
    kinds = ["first:3", "title"]
    along = pilot.conversations(processor, pages, kinds, 1, np.random.default_rng(0))
    centred = pilot.conversations(processor, pages, kinds, 1, np.random.default_rng(0), centre=True)
    for wide, narrow in zip(along, centred):
        for a, b in zip(wide.answers, narrow.answers):
            assert 1 <= len(b.written) <= len(a.written) and set(b.written) <= set(a.written)
        assert any(len(b.written) < len(a.written) for a, b in zip(wide.answers, narrow.answers))


def test_the_word_layer_needs_the_word_loss(pilot, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reading_pilot.py", "--word-layer", "1"])
    with pytest.raises(SystemExit):
        pilot.main()
    assert "--word-loss" in capsys.readouterr().err
