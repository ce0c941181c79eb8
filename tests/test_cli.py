"""The `nvila` command: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from nvila.cli import main
from nvila.models.nvila.configuration_nvila import from_name
from nvila.models.nvila.geometry import image_tokens
from tests.test_image_io import png_header_only


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("preset", ["nvila-8b", "nvila-lite-8b"])
@pytest.mark.parametrize("size", ["448x448", "896x896", "1344x896", "1920x1080"])
def test_tokens_json(capsys, preset, size):
    code, out, _ = run(capsys, "tokens", "--preset", preset, "--image", size, "--json")
    assert code == 0
    report = json.loads(out)
    w, h = map(int, size.split("x"))
    t = image_tokens(w, h, from_name(preset))
    assert (
        report["grid"] == list(t.grid) and report["vit_tiles"] == t.vit_tiles and report["llm_tokens"] == t.llm_tokens
    )


def test_tokens_text_and_video(capsys):
    code, out, _ = run(capsys, "tokens", "--preset", "nvila-8b-video", "--image", "1344x896", "--video-frames", "256")
    assert code == 0
    assert "grid 4x3 tiles" in out and "3072 LLM visual tokens" in out
    assert "8192 LLM visual tokens after 8x temporal pooling (65536 without)" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["tokens", "--preset", "nvila-9000", "--image", "448x448"],
        ["tokens", "--preset", "nvila-8b", "--image", "1x10000"],
        ["tokens", "--preset", "nvila-8b", "--image", "50000x50000"],
        ["tokens", "--preset", "nvila-8b"],
    ],
)
def test_tokens_errors(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("nvila tokens: error:")


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["tokens", "--preset", "nvila-8b", "--image", "big"])
    assert info.value.code == 2


def test_generate_with_default_model(capsys, tmp_path):
    from nvila.assets import SAMPLE_IMAGE

    code, out, _ = run(capsys, "generate", "--image", str(SAMPLE_IMAGE), "--prompt", "What?", "--max-new-tokens", "5")
    assert code == 0 and out.strip()
    code, streamed, _ = run(
        capsys, "generate", "--image", str(SAMPLE_IMAGE), "--prompt", "What?", "--max-new-tokens", "5", "--stream"
    )
    assert code == 0 and streamed.strip() == out.strip()


@pytest.mark.parametrize(
    "case", ["empty_file", "not_image", "bomb", "missing", "placeholders", "empty_prompt", "bad_model"]
)
def test_generate_bad_input(capsys, tmp_path, image_file, case):
    image = image_file(64, 64)
    args = ["generate", "--image", str(image), "--prompt", "What?"]
    if case == "empty_file":
        (tmp_path / "e.png").write_bytes(b"")
        args[2] = str(tmp_path / "e.png")
    elif case == "not_image":
        (tmp_path / "t.png").write_text("hello")
        args[2] = str(tmp_path / "t.png")
    elif case == "bomb":
        (tmp_path / "b.png").write_bytes(png_header_only(50000, 50000))
        args[2] = str(tmp_path / "b.png")
    elif case == "missing":
        args[2] = str(tmp_path / "nope.png")
    elif case == "placeholders":
        args[4] = "<image> and <image>?"
    elif case == "empty_prompt":
        args[4] = ""
    elif case == "bad_model":
        args += ["--model", str(tmp_path)]
    elif case == "bad_dtype":
        args += ["--dtype", "float8"]
    else:
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        args += ["--device", "cuda"]
    code, out, err = run(capsys, *args)
    assert code == 1 and out == ""
    assert err.startswith("nvila generate: error:") and err.count("\n") == 1, err


def test_real_process_reports_one_line_without_traceback(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc = subprocess.run(
        [sys.executable, "-m", "nvila.cli", "generate", "--image", str(bad), "--prompt", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stdout == ""


def test_help_has_examples(capsys):
    for command in ("generate", "tokens"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "example"),
    [
        ("generate", "nvila generate --video clip.mp4 --frames 32"),
        ("serve", "nvila serve --model ckpt/ --frame-sampling linspace --video-timestamps"),
        ("eval", "--benchmark activitynet_rtl --data data/anet --frame-sampling linspace --video-timestamps"),
    ],
)
def test_video_options_are_explained_by_every_command(capsys, command, example):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and example in text  # the command's own examples (serve, eval: from their modules)
    assert "--frame-sampling {centres,linspace}" in text and "round(linspace(0, n-1, N))" in text
    assert "--video-timestamps" in text and "The video frames were sampled at" in text


def test_generate_with_a_video(capsys, tmp_path):
    from tests.test_video_io import write_video

    video = write_video(tmp_path / "clip.mp4", 24)
    code, out, err = run(capsys, "generate", "--video", str(video), "--frames", "4", "--prompt", "What happens?",
                         "--max-new-tokens", "3")  # fmt: skip
    assert code == 0 and out.strip(), err
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    code, out, err = run(capsys, "generate", "--video", str(tmp_path / "bad.mp4"), "--prompt", "What happens?")
    assert code == 1 and out == "" and err.startswith("nvila generate: error:") and err.count("\n") == 1
    code, _, err = run(capsys, "generate", "--video", str(video), "--fps", "0", "--prompt", "What?")
    assert code == 1 and "--fps" in err


def test_generate_passes_the_video_options(capsys, tmp_path, monkeypatch):
    from nvila.pipeline import NVILAPipeline
    from nvila.video_io import SAMPLINGS
    from tests.test_video_io import frame_index, write_video

    seen = {}

    def fake_generate(self, prompt, images, options, videos):
        seen.update(timestamps=self.processor.video_timestamps, tile=self.processor.config.tile_size, videos=videos)
        return "ok"

    monkeypatch.setattr(NVILAPipeline, "generate", fake_generate)
    video = write_video(tmp_path / "clip.mp4", 24)
    args = ["generate", "--video", str(video), "--frames", "4", "--prompt", "When?"]
    code, out, err = run(capsys, *args, "--frame-sampling", "linspace", "--timestamps")
    assert code == 0 and out == "ok\n", err
    [clip] = seen["videos"]
    assert [frame_index(f) for f in clip.frames] == [0, 8, 15, 23]  # round(linspace(0, 23, 4))
    assert {f.size for f in clip.frames} == {(seen["tile"], seen["tile"])}  # resized to the tile while decoding
    assert seen["timestamps"] is True
    run(capsys, *args)
    assert [frame_index(f) for f in seen["videos"][0].frames] == [3, 9, 15, 21]  # segment centres (default)
    assert seen["timestamps"] is False
    run(capsys, *args, "--video-timestamps")  # the spelling serve and eval use
    assert seen["timestamps"] is True
    with pytest.raises(SystemExit):
        main([*args, "--frame-sampling", "random"])
    assert f"choose from {', '.join(map(repr, SAMPLINGS))}" in capsys.readouterr().err
