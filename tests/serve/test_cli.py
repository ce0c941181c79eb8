"""`nvila serve` arguments: help with examples, checks before loading, and what reaches uvicorn."""

from __future__ import annotations

import argparse

import pytest

from nvila.errors import ConfigError
from nvila.serve.cli import HELP, add_serve_args, run_serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nvila serve", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_serve_args(p)
    return p


def test_help_lists_every_flag_with_examples():
    text = parser().format_help()
    for flag in (
        "--model",
        "--host",
        "--port",
        "--device",
        "--dtype",
        "--api-key",
        "--allow-local-media",
        "--max-concurrent",
        "--max-tokens-cap",
        "--timeout",
        "--max-request-bytes",
        "--max-images",
        "--max-frames",
        "--max-batch",
        "--max-len",
        "--vision-cache-mib",
        "--compile",
        "--frame-sampling",
        "--video-timestamps",
    ):
        assert flag in text, flag
    assert "examples:" in text and "nvila serve --model" in text and "curl" in text
    assert 'a request may set "frame_sampling" / "video_timestamps" in its body' in " ".join(text.split())


@pytest.mark.parametrize(
    "bad",
    [["--max-concurrent", "0"], ["--timeout", "-1"], ["--port", "http"], ["--max-frames", "0"]]
    + [["--max-batch", "0"], ["--vision-cache-mib", "-1"], ["--frame-sampling", "random"]]
    + [["--video-timestamps=yes"]],
)
def test_bad_values_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(bad)
    assert exit_info.value.code == 2


def test_run_serve_loads_the_default_model_and_hands_settings_to_uvicorn(monkeypatch, tmp_path):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setenv("NVILA_API_KEY", "from-env")
    args = parser().parse_args(
        ["--port", "8123", "--allow-local-media", str(tmp_path), "--max-concurrent", "3", "--max-tokens-cap", "99"]
        + ["--max-frames", "12", "--max-batch", "5", "--max-len", "300", "--vision-cache-mib", "0"]
    )
    assert run_serve(args) == 0
    ((app, kwargs),) = calls
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    settings = app.state.settings
    assert settings.model_name == "nvila-small"  # nvila.assets.DEFAULT_MODEL
    assert settings.api_key == "from-env" and settings.allow_local_media == tmp_path.resolve()
    assert settings.max_concurrent == 3 and settings.max_tokens_cap == 99 and app.state.admission.limit == 3
    assert settings.max_frames == 12
    assert (settings.frame_sampling, settings.video_timestamps) == ("centres", False)  # the defaults
    assert (settings.engine.max_batch, settings.engine.max_len, settings.engine.vision_cache_bytes) == (5, 300, 0)
    runner = app.state.engine.core.runner
    assert (runner.slots, runner.max_len) == (5, 300)  # the KV cache was allocated for them
    app.state.engine.close()

    calls.clear()
    argv = ["--api-key", "flag-wins", "--model-name", "demo", "--frame-sampling", "linspace", "--video-timestamps"]
    assert run_serve(parser().parse_args(argv)) == 0
    settings = calls[0][0].state.settings
    assert settings.api_key == "flag-wins" and settings.model_name == "demo"
    assert (settings.frame_sampling, settings.video_timestamps) == ("linspace", True)
    calls[0][0].state.engine.close()


def test_a_missing_media_folder_fails_before_the_model_loads(monkeypatch, tmp_path):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn must not start"))
    args = parser().parse_args(["--allow-local-media", str(tmp_path / "missing"), "--model", str(tmp_path / "none")])
    with pytest.raises(ConfigError, match="allow-local-media"):
        run_serve(args)
