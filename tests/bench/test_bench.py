"""`nvila bench`: visual-token counts against placeholders, features and geometry; one shared text config;
report tables from a given result set; CLI errors. No timing assertions: timings only go to reports."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import Qwen2ForCausalLM

from nvila.bench.cli import add_bench_args, model_list, run_bench
from nvila.bench.peers import available_models, build_model, default_models, fill_random, text_config
from nvila.bench.report import case_table, nvila_ratio_table, render, summary_text, winners_table, write_report
from nvila.bench.runner import (
    BenchResult,
    Case,
    Measurement,
    cases_for,
    decode_bytes,
    device_peak,
    measure_case,
    merge_results,
    prefill_flops,
)
from nvila.errors import ConfigError
from nvila.models.nvila.configuration_nvila import TextConfig
from nvila.models.nvila.configuration_pretrained import qwen2_config
from nvila.models.nvila.geometry import image_tokens, video_tokens
from nvila.ops.quantized import W8A8Linear

PEERS = [n for n in available_models() if not n.startswith("nvila")]


@pytest.fixture(scope="module")
def contenders():
    """Every available contender at the tiny bench size (real tile geometry, narrow widths)."""
    return {name: build_model(name, "tiny") for name in available_models()}


def placeholder_id(bm, video: bool) -> int:
    cfg = bm.model.config
    return cfg.video_token_id if video and hasattr(cfg, "video_token_id") else cfg.image_token_id


# ---- token counts --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nvila", "nvila-lite"])
@pytest.mark.parametrize("size", [(448, 448), (1344, 896), (1920, 1080)])
@torch.inference_mode()
def test_nvila_image_counts_equal_geometry(contenders, name, size):
    bm = contenders[name]
    t = image_tokens(*size, bm.cfg)
    inputs = bm.image_inputs(*size)
    assert inputs.visual_tokens == t.llm_tokens
    assert inputs.tower_patches == t.vit_tiles * 32 * 32
    assert bm.encode(inputs).shape[0] == t.llm_tokens


@pytest.mark.parametrize(("name", "pool"), [("nvila", 8), ("nvila-lite", 1)])
@torch.inference_mode()
def test_nvila_video_counts_equal_geometry_with_pooling(contenders, name, pool):
    bm = contenders[name]
    assert bm.pool == pool
    budget = video_tokens(9, bm.cfg, pool)  # 9 frames: with 8x pooling the last group has one frame
    inputs = bm.video_inputs(9)
    features = bm.encode(inputs)
    assert inputs.visual_tokens == budget.llm_tokens == features.shape[0]
    logits = bm.prefill(inputs, bm.new_cache())
    assert logits.shape == (1, bm.text.vocab_size)


def test_nvila_video_pooling_is_the_mean_of_consecutive_frames(contenders):
    bm = contenders["nvila"]
    inputs = bm.video_inputs(9)
    frames = inputs.tensors["video_pixel_values"]
    with torch.inference_mode():
        pooled = bm.encode(inputs).view(2, bm.cfg.tokens_per_tile, -1)
        per_frame = bm.model.get_image_features(frames, [None] * 9).view(9, bm.cfg.tokens_per_tile, -1)
    torch.testing.assert_close(pooled[0], per_frame[:8].mean(0))
    torch.testing.assert_close(pooled[1], per_frame[8])


@pytest.mark.parametrize("name", PEERS)
@pytest.mark.parametrize("case", [(448, 448), (1344, 896), 5])
@torch.inference_mode()
def test_peer_placeholders_equal_features(contenders, name, case):
    bm = contenders[name]
    video = isinstance(case, int)
    inputs = bm.video_inputs(case) if video else bm.image_inputs(*case)
    ids = inputs.tensors["input_ids"]
    assert int((ids == placeholder_id(bm, video)).sum()) == inputs.visual_tokens
    assert inputs.prompt_tokens == ids.shape[1]
    assert bm.encode(inputs).shape[0] == inputs.visual_tokens
    if case != (1344, 896):  # the model's own forward checks placeholders against features (long prompt: skipped)
        logits = bm.prefill(inputs, bm.new_cache())
        assert logits.shape == (1, bm.text.vocab_size)


def tiles_times_tokens(name: str, bm, tensors: dict[str, torch.Tensor]) -> int:
    """A peer's visual tokens from the processor's public outputs: tiles (or patch grid) x tokens per tile."""
    if name == "qwen2-vl":  # a t x h x w patch grid, merged 2x2 into one token
        return int(tensors["image_grid_thw"].prod(-1).sum()) // bm.processor.image_processor.merge_size**2
    return tensors["pixel_values"].shape[0] * bm.processor.image_seq_length  # internvl: 256 per 448 px tile


@pytest.mark.parametrize("name", ["qwen2-vl", "internvl"])
@pytest.mark.parametrize("size", [(448, 448), (1920, 1080)])
def test_peer_image_counts_equal_tile_arithmetic(contenders, name, size):
    """The expanded prompt holds as many placeholders as the processor's tiles give tokens (LLaVA-OneVision's
    unpadded count is checked against its features in `test_peer_placeholders_equal_features`)."""
    bm = contenders[name]
    inputs = bm.image_inputs(*size)
    assert inputs.visual_tokens == tiles_times_tokens(name, bm, inputs.tensors) > 0


def test_known_token_counts(contenders):
    """Published geometry: 448 px is one Qwen2-VL / InternVL tile of 256; 8 frames of 640x360 per model."""
    expected_448 = {"qwen2-vl": 256, "internvl": 256, "nvila": 2304, "nvila-lite": 121}
    expected_8_frames = {
        "nvila": 256,  # 8 frames pooled into one 256-token map
        "nvila-lite": 8 * 121,
        "nvila-lite-w8a8": 8 * 121,
        "qwen2-vl": 4 * 26 * 46 // 4,  # 644x364 after smart_resize, 2 frames per temporal patch, 2x2 merge
        "llava-onevision": 8 * 196 + 1,  # 27x27 pooled to 14x14 per frame, one newline
        "internvl": 8 * 256,
    }
    for name, bm in contenders.items():
        if name in expected_448:
            assert bm.image_inputs(448, 448).visual_tokens == expected_448[name], name
        assert bm.video_inputs(8).visual_tokens == expected_8_frames[name], name


def test_every_model_shares_one_text_config(contenders):
    text = text_config("tiny")
    reference = sum(p.numel() for p in Qwen2ForCausalLM(qwen2_config(text)).parameters())
    assert {name: bm.info().llm_params for name, bm in contenders.items()} == dict.fromkeys(contenders, reference)
    assert all(bm.text == text for bm in contenders.values())


@pytest.mark.parametrize(
    ("size", "llm"), [("full", (7.5e9, 7.7e9)), ("2b", (1.77e9, 1.78e9))]
)  # Qwen2.5-7B; Qwen2.5-1.5B with an untied LM head
def test_real_width_models_have_real_sizes(size, llm):
    """Real-width contenders built on the meta device (no memory): the real towers and one shared LLM."""
    ranges = {
        "nvila": (0.40e9, 0.50e9),  # SigLIP SO400M + 2x2 projector from 3 x 1152 channels
        "nvila-lite": (0.45e9, 0.60e9),  # SigLIP SO400M + 3x3 projector
        "qwen2-vl": (0.60e9, 0.70e9),  # ViT-675M with its merger
        "llava-onevision": (0.38e9, 0.45e9),  # SigLIP SO400M at 384 px + MLP
        "internvl": (0.28e9, 0.36e9),  # InternViT-300M + MLP
    }
    for name in default_models():
        info = build_model(name, size, device="meta", dtype=torch.bfloat16).info()
        low, high = ranges[name]
        assert low < info.visual_params < high, (name, info.visual_params)
        assert llm[0] < info.llm_params < llm[1], (name, info.llm_params)


# ---- report --------------------------------------------------------------------------------------------
def _result(device_name: str = "cpu") -> BenchResult:
    def m(model, case, tokens, ttft, **kw):
        w, h = map(int, case.split("x")) if "x" in case else (0, 0)
        kind = "image" if "x" in case else "video"
        frames = 0 if kind == "image" else int(case.split()[0])
        return Measurement(
            model, case, kind, w, h, frames, tokens, tokens * 4, tokens + 30, [10.0, 12.0, 11.0], ttft, [20.0] * 3, 64.0
        )

    measurements = [
        m("nvila", "448x448", 2304, [100.0, 120.0, 110.0]),
        m("qwen2-vl", "448x448", 256, [50.0, 60.0, 55.0]),
        m("llava-onevision", "448x448", 3699, [200.0, 220.0, 210.0]),
        m("nvila", "1920x1080", 3072, [140.0, 150.0, 130.0]),
        m("qwen2-vl", "1920x1080", 2691, [280.0, 280.0, 280.0]),
        m("llava-onevision", "1920x1080", 7269, [300.0, 300.0, 300.0]),
        m("nvila", "8 frames", 256, [30.0, 30.0, 30.0]),
        m("qwen2-vl", "8 frames", 1196, [60.0, 60.0, 60.0]),
        Measurement("llava-onevision", "8 frames", "video", frames=8, visual_tokens=1569, error="out of memory"),
    ]
    models = [
        {"name": n, "label": lab, "geometry": "g", "tower": "t", "visual_params": 4e8, "llm_params": 7.6e9}
        for n, lab in [("nvila", "NVILA"), ("qwen2-vl", "Qwen2-VL"), ("llava-onevision", "LLaVA-OneVision")]
    ]
    machine = {
        "cpu": "Test CPU",
        "cpu_cores": 2,
        "torch_threads": 2,
        "os": "Linux",
        "python": "3.11",
        "torch": "2.x",
        "transformers": "5.x",
        "device": "cpu",
        "device_name": device_name,
    }
    settings = {
        "size": "small",
        "dtype": "bfloat16",
        "repeats": 3,
        "decode_tokens": 16,
        "video_frame_size": [640, 360],
        "text_config": TextConfig().__dict__,
    }
    return BenchResult(machine, settings, models, measurements, ["videos of 256 frames were not run"])


def _row(lines: list[str], *cells: str) -> list[str]:
    found = [line for line in lines if line.startswith("| " + " | ".join(cells) + " |")]
    assert len(found) == 1, (cells, lines)
    return [c.strip() for c in found[0].strip("|").split("|")]


def test_case_table_holds_counts_spreads_and_ratios():
    result = _result()
    row = _row(case_table(result, "image"), "448x448", "NVILA")
    # visual tokens, tower patches, vision ms, TTFT median (min-max), decode, peak MB, ratios vs Qwen2-VL
    assert row[2:] == [
        "2,304",
        "9,216",
        "11 (10-12)",
        "110 (100-120)",
        "20.0 (20.0-20.0)",
        "64",
        "9.00x",
        "1.00x",
        "2.00x",
    ]
    row = _row(case_table(result, "image"), "1920x1080", "NVILA")
    assert row[-3:] == ["1.14x", "1.00x", "0.50x"]
    failed = _row(case_table(result, "video"), "8 frames", "LLaVA-OneVision")
    assert failed[4] == "out of memory"


def test_nvila_ratio_table_against_both_peers():
    lines = nvila_ratio_table(_result())
    assert lines[0] == (
        "| input | model | tokens vs Qwen2-VL | TTFT vs Qwen2-VL "
        "| tokens vs LLaVA-OneVision | TTFT vs LLaVA-OneVision |"
    )
    assert _row(lines, "448x448", "NVILA")[2:] == ["9.00x", "2.00x", "0.62x", "0.52x"]
    assert _row(lines, "8 frames", "NVILA")[2:] == ["0.21x", "0.50x", "-", "-"]  # LLaVA-OV failed there


def test_winners_table_ranks_by_median_ttft():
    lines = winners_table(_result())
    assert _row(lines, "448x448")[1:] == ["Qwen2-VL (256)", "Qwen2-VL (55 ms)", "2 of 3"]
    assert _row(lines, "1920x1080")[1:] == ["Qwen2-VL (2,691)", "NVILA (140 ms)", "1 of 3"]


def test_write_report_writes_markdown_and_plots(tmp_path):
    out = tmp_path / "docs" / "performance.md"
    written = write_report(_result(), out, "nvila bench --size small")
    text = out.read_text()
    assert written[0] == out
    for name in ("tokens_vs_resolution", "ttft_vs_resolution", "tokens_vs_frames", "ttft_vs_frames"):
        png = tmp_path / "docs" / "performance" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](performance/{name}.png)" in text
    assert "`nvila bench --size small`" in text and "Test CPU, 2 cores" in text
    assert "videos of 256 frames were not run" in text
    assert "| 448x448 | NVILA | 2,304 |" in text
    assert "Fraction of the device's peak" not in text  # only for known GPUs
    assert not list((tmp_path / "docs").glob(".*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize(
    ("threads", "load", "shared"), [(2, [1.5, 1.94], False), (1, [2.9, 4.45], True), (1, [0.4, 1.2], False)]
)
def test_the_load_line_counts_the_runs_own_threads(threads, load, shared):
    """On 2 cores, a 2-thread run makes a load of ~2 by itself: only load beyond the run's threads is other work."""
    result = _result()
    result.machine.update(torch_threads=threads, load_average=load)
    text = render(result, {}, Path("perf.md"))
    assert f"1-min load average {load[0]} at the start, {load[1]} at the end" in text
    assert ("other processes shared the CPU" in text) is shared


def test_report_on_a_known_gpu_states_the_fraction_of_peak(tmp_path):
    result = _result("NVIDIA H100 80GB HBM3")
    out = tmp_path / "performance.md"
    write_report(result, out)
    text = out.read_text()
    assert "## Fraction of the device's peak" in text and "**H100**" in text
    m = result.find("nvila", "448x448")
    flops = prefill_flops(TextConfig(), m.prompt_tokens) / ((110.0 - 11.0) / 1e3)
    assert f"| 448x448 | NVILA | {flops / 1e12:,.0f} | {100 * flops / 989e12:.0f}% |" in text


def test_peak_arithmetic_and_device_table():
    assert device_peak("NVIDIA H100 PCIe")[0] == "H100 PCIe"
    assert device_peak("NVIDIA H100 80GB HBM3")[0] == "H100"
    assert device_peak("NVIDIA H200")[0] == "H200"
    assert device_peak("cpu") is None
    text = TextConfig(
        vocab_size=10, hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1,
    )  # fmt: skip
    linear = 2 * 16 + 2 * 4 * 2 + 3 * 4 * 8  # q, o; k, v (1 KV head of 2); gate, up, down
    assert prefill_flops(text, 3) == 2 * linear * 3 + 2 * 1 * 9 * 4 + 2 * 4 * 10
    assert decode_bytes(text, 5, 2) == (linear + 40 + 2 * 1 * 2 * 5) * 2


def test_result_json_round_trip_and_summary():
    result = _result()
    assert BenchResult.from_json(result.to_json()) == result
    summary = summary_text(result)
    assert "9.00x" in summary and "out of memory" in summary


# ---- merging a run of extra cases -----------------------------------------------------------------------
def _extra_run() -> BenchResult:
    """A second run on the same machine and settings: 256 frames for two models, and 8 frames again for NVILA."""
    base = _result()
    measurements = [
        Measurement("nvila", "256 frames", "video", frames=256, visual_tokens=8192, ttft_ms=[900.0, 1000.0]),
        Measurement("qwen2-vl", "256 frames", "video", frames=256, visual_tokens=38272, ttft_ms=[4000.0, 4000.0]),
        Measurement("nvila", "8 frames", "video", frames=8, visual_tokens=256, ttft_ms=[25.0, 25.0]),
    ]
    machine = {**base.machine, "load_average": [3.5, 4.25]}
    settings = {**base.settings, "repeats": 2, "command": "nvila bench --frames 8,256 --merge r.json"}
    return BenchResult(machine, settings, base.models[:2], measurements, [])


def test_merge_adds_cases_replaces_repeats_and_keeps_the_order():
    merged = merge_results(_result(), _extra_run())
    videos = [(m.case, m.model) for m in merged.measurements if m.kind == "video"]
    assert videos == [
        ("8 frames", "qwen2-vl"),
        ("8 frames", "llava-onevision"),
        ("8 frames", "nvila"),
        ("256 frames", "nvila"),
        ("256 frames", "qwen2-vl"),
    ]
    assert merged.find("nvila", "8 frames").ttft_ms == [25.0, 25.0]  # the new run's values replace the old
    assert len(merged.measurements) == len(_result().measurements) + 2
    assert merged.notes == []  # 256 frames are now measured: the skip note goes
    assert merged.settings["repeats"] == 3 and "command" not in merged.settings  # the saved run's settings stay
    [run] = merged.settings["merged_runs"]
    assert run["cases"] == ["256 frames", "8 frames"] and run["repeats"] == 2 and run["load_average"] == [3.5, 4.25]
    assert _row(nvila_ratio_table(merged), "256 frames", "NVILA")[2:4] == ["0.21x", "0.24x"]


def test_merge_keeps_the_skip_note_for_lengths_still_missing():
    base = _result()
    base.notes = ["videos of 128, 256 frames were not run (frames capped at 64)", "other note"]
    assert merge_results(base, _extra_run()).notes == [
        "videos of 128 frames were not run (frames capped at 64)",
        "other note",
    ]


@pytest.mark.parametrize(
    ("where", "key", "value", "message"),
    [
        ("settings", "size", "full", "different size"),
        ("settings", "decode_tokens", 8, "different decode_tokens"),
        ("machine", "cpu", "Other CPU", "different machines"),
    ],
)
def test_merge_refuses_runs_that_do_not_compare(where, key, value, message):
    extra = _extra_run()
    getattr(extra, where)[key] = value
    with pytest.raises(ConfigError, match=message):
        merge_results(_result(), extra)


def test_merged_report_names_the_second_run_and_its_load(tmp_path):
    out = tmp_path / "performance.md"
    write_report(merge_results(_result(), _extra_run()), out, "nvila bench --size small")
    text = out.read_text()
    assert "Generated by `nvila bench --size small`, then `nvila bench --frames 8,256 --merge r.json` (merged)" in text
    assert (
        "- 256 frames, 8 frames: measured in a separate run of the same models (`nvila bench --frames 8,256 --merge "
        "r.json`), 2 timed runs after one warm-up, 2 torch threads; the ratios on these cases compare models of that "
        "run; 1-min load average 3.5 at its start, 4.25 at its end (other processes shared the CPU" in text
    )
    assert "| 256 frames | NVILA | 8,192 |" in text and "were not run" not in text


def test_w8a8_variant_quantizes_the_tower_and_keeps_the_features_close(contenders):
    """NVILA-Lite with the W8A8 tower: same seed, same tokens, every tower linear W8A8, features within int8 error."""
    lite, w8a8 = contenders["nvila-lite"], contenders["nvila-lite-w8a8"]
    linears = [m for m in w8a8.model.vision_tower.modules() if isinstance(m, (nn.Linear, W8A8Linear))]
    assert linears and all(isinstance(m, W8A8Linear) for m in linears)
    assert not any(isinstance(m, W8A8Linear) for m in lite.model.modules())
    assert "W8A8" in w8a8.info().label and "nvila-lite-w8a8" not in default_models()
    with torch.inference_mode():
        inputs = lite.image_inputs(672, 448)
        assert w8a8.image_inputs(672, 448).visual_tokens == inputs.visual_tokens
        ref, quant = lite.encode(inputs), w8a8.encode(inputs)
    error = ((quant - ref).norm() / ref.norm()).item()
    assert 0 < error < 0.1, error


def test_fill_random_gives_every_weight_a_finite_value():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Embedding(5, 8))
    for p in model.parameters():
        p.data.fill_(float("nan"))
    fill_random(model, seed=3)
    linear, norm, embedding = model
    assert torch.equal(norm.weight, torch.ones(8)) and torch.equal(norm.bias, torch.zeros(8))
    assert torch.equal(linear.bias, torch.zeros(8))
    for matrix in (linear.weight, embedding.weight):
        assert torch.isfinite(matrix).all() and 0.005 < matrix.std() < 0.05
    again = nn.Linear(4, 8)
    fill_random(again, seed=3)
    assert torch.equal(again.weight, linear.weight)  # seeded


def test_exact_image_sizes_replace_the_standard_ones():
    cases, _ = cases_for("images", 64, images=[(1344, 896), (448, 448), (1344, 896)])
    assert [c.label for c in cases] == ["448x448", "1344x896"]
    cases, _ = cases_for("all", 8, images=[(640, 480)])
    assert [c.label for c in cases] == ["640x480", "8 frames"]


def test_exact_frame_counts_replace_the_standard_lengths():
    cases, notes = cases_for("videos", 64, [256, 8, 256])
    assert [c.frames for c in cases] == [8, 256] and notes == []
    cases, _ = cases_for("all", 64, [256])
    assert [c.label for c in cases][-2:] == ["1920x1080", "256 frames"]


# ---- command line --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvila bench")
    add_bench_args(parser)
    return parser


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "nvila,gpt-4v"], "unknown model(s) gpt-4v; known: nvila, nvila-lite, nvila-lite-w8a8, qwen2-vl"),
        (["--models", ","], "give at least one model"),
        (["--cases", "audio"], "invalid choice: 'audio'"),
        (["--size", "huge"], "invalid choice: 'huge'"),
        (["--repeats", "0"], "must be >= 1"),
        (["--frames", "64,0"], "must be >= 1"),
        (["--frames", "64,"], "expected a whole number"),
        (["--images", "1344"], "image size '1344' is not WIDTHxHEIGHT"),
        (["--images", "0x448"], "must be >= 1"),
    ],
)
def test_cli_rejects_bad_usage(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_model_list_and_library_errors():
    assert model_list(" NVILA, qwen2-vl,nvila") == ["nvila", "qwen2-vl"]
    with pytest.raises(ConfigError, match="unknown model 'gpt'"):
        build_model("gpt", "tiny")
    with pytest.raises(ConfigError, match="unknown bench size"):
        build_model("nvila", "medium")
    with pytest.raises(ConfigError, match="unknown case set"):
        cases_for("audio", 64)
    cases, notes = cases_for("videos", 64)
    assert [c.frames for c in cases] == [8, 32, 64] and "256" in notes[0]
    with pytest.raises(ConfigError, match="--images chooses image sizes"):
        run_bench(_parser().parse_args(["--cases", "videos", "--images", "448x448"]))


@pytest.mark.slow  # a fresh interpreter running the bench (~10 s); `make test-slow` and CI run it
def test_cli_end_to_end_tiny(tmp_path, capsys):
    """The real command in a fresh process: its report, and nothing on stderr but its progress bar (no import-time
    warnings of torchao or torch's pytree)."""
    out, raw = tmp_path / "perf.md", tmp_path / "results.json"
    argv = ["--size", "tiny", "--models", "nvila-lite,qwen2-vl", "--cases", "videos", "--max-frames", "8"]
    argv += ["--repeats", "1", "--decode-tokens", "2", "--out", str(out), "--json", str(raw)]
    nvila = Path(sys.executable).with_name("nvila")
    done = subprocess.run([nvila, "bench", *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    stderr_lines = [line for line in re.split(r"[\r\n]", done.stderr) if line.strip()]
    assert stderr_lines and all(line.startswith("nvila bench:") for line in stderr_lines), stderr_lines
    printed = done.stdout
    assert "8 frames" in printed and "1.00x" in printed  # Qwen2-VL against itself
    data = json.loads(raw.read_text())
    lite = next(m for m in data["measurements"] if m["model"] == "nvila-lite")
    assert lite["visual_tokens"] == 968 and len(lite["ttft_ms"]) == 1 and len(lite["decode_tok_s"]) == 1
    assert "| 8 frames | NVILA-Lite | 968 |" in out.read_text()
    rerendered = tmp_path / "rerendered.md"
    assert run_bench(_parser().parse_args(["--from-json", str(raw), "--out", str(rerendered)])) == 0
    assert rerendered.read_text().replace("](rerendered/", "](perf/") == out.read_text()
    # a second run of one more length, merged into the saved one
    argv = ["--size", "tiny", "--models", "nvila-lite,qwen2-vl", "--cases", "videos", "--frames", "2"]
    argv += ["--repeats", "1", "--decode-tokens", "2", "--note", "shared CPU", "--out", str(out), "--merge", str(raw)]
    assert run_bench(_parser().parse_args(argv)) == 0
    data = json.loads(raw.read_text())
    assert [(m["model"], m["case"]) for m in data["measurements"]] == [
        ("nvila-lite", "2 frames"),
        ("qwen2-vl", "2 frames"),
        ("nvila-lite", "8 frames"),
        ("qwen2-vl", "8 frames"),
    ]
    assert "| 2 frames | NVILA-Lite | 242 |" in out.read_text() and "\n- shared CPU\n" in out.read_text()
    with pytest.raises(ConfigError, match="different decode_tokens"):
        run_bench(_parser().parse_args([*argv[:-4], "--decode-tokens", "3", "--merge", str(raw)]))


def test_a_case_with_the_inputs_of_an_earlier_one_repeats_its_measurement(contenders, tmp_path):
    """NVILA's 448x448 and 896x896 images are both 14 tiles and 2,304 tokens: one timed run serves both; Qwen2-VL's
    differ, so both run. The report marks the repeated row."""
    measured: dict = {}
    run = dict(repeats=1, decode_tokens=1, warmup=False, measured=measured)
    nvila = [measure_case(contenders["nvila"], Case("image", w, h), **run) for w, h in ((448, 448), (896, 896))]
    assert nvila[0].same_as is None and nvila[1].same_as == "448x448"
    assert nvila[1].ttft_ms == nvila[0].ttft_ms and nvila[1].vision_ms == nvila[0].vision_ms and nvila[1].ok
    wide = measure_case(contenders["nvila"], Case("image", 1344, 896), **run)
    assert wide.same_as is None and wide.ttft_ms != nvila[0].ttft_ms
    measured.clear()
    qwen = [measure_case(contenders["qwen2-vl"], Case("image", w, h), **run) for w, h in ((448, 448), (896, 896))]
    assert [m.same_as for m in qwen] == [None, None] and len(measured) == 2
    result = BenchResult({}, {}, [], [*nvila, wide, *qwen])
    table = "\n".join(case_table(result, "image"))
    assert "| 896x896 (= 448x448) | nvila |" in table and "| 448x448 | nvila |" in table


def test_out_of_memory_is_recorded_once_and_a_repeated_case_runs_nothing(contenders, monkeypatch):
    """A warm-up that runs out of memory ends the case with its error and no timed run; a later case of the same
    shapes repeats that error without running anything."""
    bm = contenders["nvila"]
    calls = []

    def exhausted(*args, **kwargs):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bm, "prefill", exhausted)
    measured: dict = {}
    run = dict(repeats=2, decode_tokens=1, warmup=True, measured=measured)
    first = measure_case(bm, Case("image", 448, 448), **run)
    assert first.error == "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB" and not first.ok
    assert first.ttft_ms == [] and first.vision_ms == [] and len(calls) == 1
    second = measure_case(bm, Case("image", 896, 896), **run)
    assert second.same_as == "448x448" and second.error == first.error and len(calls) == 1


@pytest.mark.parametrize("name", ["nvila", "qwen2-vl"])
def test_the_visual_path_is_timed_inside_the_prefill(contenders, name):
    bm = contenders[name]
    m = measure_case(bm, Case("image", 300, 200), repeats=2, decode_tokens=1, warmup=False)
    assert len(m.vision_ms) == len(m.ttft_ms) == 2, m.error
    assert all(0 < v < t for v, t in zip(m.vision_ms, m.ttft_ms))  # part of the first token's time
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in bm.visual_modules)
