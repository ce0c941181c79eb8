"""scripts/reading_table1.py: it reads the pilot's reports, and a tiny run of every arm gives the table and plot."""

from __future__ import annotations

import json
import sys

import pytest


@pytest.fixture(scope="module")
def table1(load_script):
    return load_script("reading_table1")


def test_the_last_report_of_a_log_is_read(table1, tmp_path):
    log = tmp_path / "t1-x.log"
    assert table1.last_report(log) is None
    log.write_text("stage first: 3 steps\n")
    assert table1.last_report(log) is None  # no report yet: the arm is still training
    report = "step {} loss 6.5 word loss 4.25 | train: first 10.0%, title 0.5% | fresh: first 2.5%, lines 98.0%"
    report += " | 61 s\n"
    log.write_text(report.format(500) + report.format(1000).replace("4.25", "3.00"))
    assert table1.last_report(log) == {
        "steps": 1000,
        "loss": 6.5,
        "word_loss": 3.0,
        "train": {"first": 0.1, "title": 0.005},
        "fresh": {"first": 0.025, "lines": 0.98},
        "wall_s": 61,
    }


def test_unknown_arms_are_refused(table1, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reading_table1.py", "--arms", "s2-2x2,s2-5x5"])
    with pytest.raises(SystemExit):
        table1.main()
    assert "s2-5x5" in capsys.readouterr().err


@pytest.mark.slow
def test_every_arm_trains_and_the_table_orders_them_by_tokens(table1, monkeypatch, capsys, tmp_path):
    argv = ["reading_table1.py", "--steps", "2", "--pages", "4", "--test-pages", "12"]
    monkeypatch.setattr(sys, "argv", [*argv, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    table1.main()
    rows = json.loads((tmp_path / "out" / "reading_table1.json").read_text())
    assert [r["arm"] for r in rows] == list(table1.ARMS)
    assert [r["tokens"] for r in rows] == [16, 81, 144, 324, 576]
    shared = {r["arm"]: r["shared_first"] for r in rows}
    assert shared["up-2x2"] == shared["up-3x3"] == 0.0 < shared["s2-2x2"] < shared["s2-3x3"]  # finer rows part lines
    assert all(r["steps"] == 2 and set(r["fresh"]) == {"first", "title", "lines", "words"} for r in rows)
    assert (tmp_path / "out" / "reading_table1.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert table.count("\n| ") == len(rows) + 1  # header and one row per arm
