"""scripts/gpu_acceptance.py: the CPU dry run of every part (slow: ~70 s), and how the runner reports a part
that is missing a package, fails, runs out of time or finds the budget spent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_acceptance.py"


@pytest.fixture(scope="module")
def acceptance(load_script):
    return load_script("gpu_acceptance")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_each_way_a_part_can_end_is_reported_and_the_rest_goes_on(acceptance, tmp_path):
    def steps(_dry, work):
        out = work / "numbers.json"
        write = f"import json; print('measured 2.5x'); json.dump({{'ratio': 2.5}}, open({str(out)!r}, 'w'))"
        return [acceptance.Step(python(write), out), acceptance.Step(python("import sys; sys.exit(3)"))]

    env = {"PATH": "/usr/bin:/bin"}
    failed = acceptance.run_part(acceptance.Part("p", "what", steps), True, tmp_path, 300, env)
    assert (failed.status, failed.reason) == ("failed", "-c exited 3")
    assert failed.results == {"numbers.json": {"ratio": 2.5}} and "measured 2.5x" in failed.output_tail

    def slow(_dry, _work):
        return [acceptance.Step(python("import time; print('started', flush=True); time.sleep(30)"))]

    timed_out = acceptance.run_part(acceptance.Part("s", "what", slow, timeout_s=2), True, tmp_path, 300, env)
    assert (timed_out.status, timed_out.reason) == ("failed", "over its 2 s limit")
    missing = acceptance.Part("m", "what", steps, needs=("no_such_module_xyz",))
    skipped = acceptance.run_part(missing, False, tmp_path, 300, env)
    assert skipped.status == "skipped" and "no_such_module_xyz not installed" in skipped.reason
    late = acceptance.run_part(acceptance.Part("l", "what", steps), True, tmp_path, 30, env)
    assert late.status == "skipped" and "budget was spent (30 s left)" in late.reason


@pytest.mark.slow  # a fresh interpreter that imports torch (~3 s); `make test-slow` and CI run it
def test_without_a_gpu_the_real_run_refuses_and_names_the_dry_run(tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, "--out", tmp_path], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no CUDA device; on a CPU run --dry-run" in done.stderr


@pytest.mark.slow
def test_the_dry_run_runs_every_part_and_writes_its_report(tmp_path, acceptance):
    done = subprocess.run(
        [sys.executable, SCRIPT, "--dry-run", "--out", tmp_path], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "acceptance.json").read_text())
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == [p.name for p in acceptance.PARTS]
    assert all(p["status"] == "ok" and p["output_tail"] for p in parts.values())
    bench = parts["bench"]["results"]["bench.json"]["measurements"]
    assert {m["model"] for m in bench} == {"nvila-lite", "qwen2-vl"} and all(m["ttft_ms"] for m in bench)
    assert parts["engine"]["results"]["engine.json"]["results"]
    assert parts["quant"]["results"]["quant_speed.json"]["quantized"]["ms_per_token"] > 0
    assert "kl" in json.dumps(parts["quant"]["results"]["quantization.json"]).lower()
    assert len(parts["fp8"]["results"]["fp8.json"]) == 4  # bf16 and FP8 arms, with and without checkpointing
    assert "full" in parts["qlora"]["output_tail"] and "lora" in parts["qlora"]["output_tail"]
    runs = parts["transformers"]["results"]["device_map.json"]["runs"]
    assert runs["split"]["equal"] and runs["eager"]["equal"] and "skipped" in runs["flash_attention_2"]
    markdown = (tmp_path / "acceptance.md").read_text()
    assert all(f"| {name} | ok |" in markdown for name in parts)
