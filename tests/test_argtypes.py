"""Shared argument definitions: the video prompt options of generate, serve and eval."""

from __future__ import annotations

import argparse

import pytest

from nvila.argtypes import FRAME_SAMPLINGS, add_video_options


def parser(**kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="test")
    add_video_options(p, **kwargs)
    return p


def test_frame_samplings_are_the_video_readers():
    from nvila.video_io import SAMPLINGS

    assert FRAME_SAMPLINGS == SAMPLINGS


def test_video_options_parse_with_defaults_and_aliases():
    args = parser().parse_args([])
    assert (args.frame_sampling, args.video_timestamps) == ("centres", False)
    args = parser().parse_args(["--frame-sampling", "linspace", "--video-timestamps"])
    assert (args.frame_sampling, args.video_timestamps) == ("linspace", True)
    assert parser(timestamps_aliases=("--timestamps",)).parse_args(["--timestamps"]).video_timestamps is True
    with pytest.raises(SystemExit):
        parser().parse_args(["--timestamps"])  # the alias exists only where it is asked for


def test_video_options_explain_themselves(capsys):
    text = parser(scope="NOTE-FOR-THIS-COMMAND").format_help()
    assert "--frame-sampling {centres,linspace}" in text and "--video-timestamps" in text
    assert "round(linspace(0, n-1, N))" in text and "The video frames were sampled at" in text
    assert text.count("NOTE-FOR-THIS-COMMAND") == 2
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["--frame-sampling", "random"])
    assert info.value.code == 2
    assert "invalid choice: 'random' (choose from 'centres', 'linspace')" in capsys.readouterr().err
