"""The trainer through the real CLI: it learns, resumes exactly (also after SIGKILL), and 2 processes = 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import nvila
from nvila.cli import main
from nvila.synth.videos import encode_mp4
from nvila.train.recipe import load_recipe
from nvila.train.trainer import Trainer
from tests.conftest import assert_modes_follow_umask


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


def test_training_lowers_the_loss_and_exports_a_loadable_model(make_recipe):
    path = make_recipe("learn", max_steps=12)
    assert main(["train", "--recipe", path]) == 0
    run = Path(path).with_suffix("").parent / "learn"
    curve = losses(run)
    assert list(curve) == list(range(1, 13))
    assert sum(curve[s] for s in (10, 11, 12)) / 3 < sum(curve[s] for s in (1, 2, 3)) / 3 - 0.5
    model, processor = nvila.load(run / "model")
    assert model.nvila_config.tile_size == 56
    assert (run / "recipe.yaml").is_file() and any((run / "tb").iterdir())
    assert_modes_follow_umask(run)  # weights, training state, logs: readable like any `cp`
    assert main(["train", "--recipe", path]) == 1  # the run exists: refused without --resume


def test_resume_continues_with_the_same_losses(make_recipe):
    full = make_recipe("full", max_steps=6)
    assert main(["train", "--recipe", full]) == 0
    part = make_recipe("part", max_steps=6)
    assert main(["train", "--recipe", part, "stop_after=3"]) == 0  # a job that ends at step 3 (state saved)
    assert main(["train", "--recipe", part, "--resume"]) == 0
    base = Path(full).parent
    a, b = losses(base / "full"), losses(base / "part")
    assert list(b) == list(range(1, 7))
    for step in range(1, 7):
        assert a[step] == pytest.approx(b[step], rel=1e-6)


@pytest.mark.slow  # a killed and a resumed training process (~6 s); `make test-slow` and CI run it
def test_sigkill_mid_run_then_resume_matches(make_recipe):
    full = make_recipe("uninterrupted", max_steps=8, data__packing=False)
    assert main(["train", "--recipe", full]) == 0
    killed = make_recipe("killed", max_steps=8, data__packing=False)
    run = Path(killed).parent / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nvila.cli", "train", "--recipe", killed], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "losses.jsonl").exists() and max(losses(run), default=0) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "state" / "trainer.json").is_file() or (run / "state.old" / "trainer.json").is_file()
    assert main(["train", "--recipe", killed, "--resume"]) == 0
    a, b = losses(Path(full).parent / "uninterrupted"), losses(run)
    assert list(b) == list(range(1, 9))
    for step in range(1, 9):
        assert a[step] == pytest.approx(b[step], rel=1e-5), step


@pytest.mark.slow  # two processes under torchrun-style FSDP2 (~10 s); `make test-slow` and CI run it
def test_two_processes_match_one(make_recipe, tmp_path):
    one = make_recipe("one", max_steps=3, micro_batch_size=4)
    two = make_recipe("two", max_steps=3, micro_batch_size=2)
    assert main(["train", "--recipe", one]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "nvila.cli", "train",
         "--recipe", two],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    for step in (1, 2, 3):
        assert a[step] == pytest.approx(b[step], rel=1e-5)


def test_bad_data_is_a_clear_error(make_recipe, tmp_path, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}\n{oops\n')
    assert main(["train", "--recipe", make_recipe("bad", data__train=str(broken))]) == 1
    assert "broken.jsonl:2:" in (err := capsys.readouterr().err) and "malformed JSON" in err


def test_vision_heads_pretrains_only_the_tower(make_recipe, tmp_path):
    path = make_recipe("heads", objective="vision_heads", max_steps=15, optim__vision_lr_ratio=1.0,
                       trainable={"vision_tower": True, "mm_projector": False, "llm": False})  # fmt: skip
    assert main(["train", "--recipe", path]) == 0
    curve = losses(tmp_path / "heads")
    assert sum(curve[s] for s in (13, 14, 15)) < sum(curve[s] for s in (1, 2, 3)) - 0.3  # colours get learned
    trained, _ = nvila.load(tmp_path / "heads" / "model")
    initial, _ = nvila.random_pretrained(trained.nvila_config.replace(), seed=0)
    tower_changed = any(
        not torch.equal(a.to(torch.bfloat16), b.to(torch.bfloat16))
        for a, b in zip(trained.vision_tower.parameters(), initial.vision_tower.parameters())
    )
    llm_same = all(
        torch.equal(a, b.to(torch.bfloat16).float()) for a, b in zip(trained.llm.parameters(), initial.llm.parameters())
    )
    assert tower_changed and llm_same


@pytest.fixture
def saved_tiny(tmp_path) -> Path:
    """A tiny checkpoint with the make_recipe geometry (56 px tiles, S2 56/112/168)."""
    cfg = nvila.from_name("tiny")
    cfg.vision.image_size, cfg.s2_scales = 56, [56, 112, 168]
    model, processor = nvila.random_pretrained(cfg, seed=3)
    nvila.save(model, processor.tokenizer, tmp_path / "base")
    return tmp_path / "base"


def built_model(path: str):
    from nvila.train.recipe import load_recipe
    from nvila.train.trainer import Trainer

    trainer = Trainer(load_recipe(path))
    trainer.setup()
    return trainer.model


def part(model, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def test_checkpoint_overrides_keep_every_weight_when_shapes_do_not_change(make_recipe, saved_tiny):
    spec = {"checkpoint": str(saved_tiny), "overrides": {"num_video_frames": 5}}
    model = built_model(make_recipe("frames", model=spec))
    base, _ = nvila.load(saved_tiny)
    assert model.nvila_config.num_video_frames == 5 and base.nvila_config.num_video_frames != 5
    for key, value in base.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_new_projector_geometry_needs_reinit_and_keeps_tower_and_llm(make_recipe, saved_tiny):
    model_spec = {"checkpoint": str(saved_tiny), "overrides": {"s2_scales": [56, 112]}}
    with pytest.raises(nvila.CheckpointError, match="shape mismatches.*mm_projector"):
        built_model(make_recipe("no_reinit", model=model_spec))
    model = built_model(make_recipe("reinit", model={**model_spec, "reinit": ["mm_projector"]}))
    base, _ = nvila.load(saved_tiny)
    assert list(model.nvila_config.s2_scales) == [56, 112]
    for prefix in ("vision_tower.", "llm."):
        for key, value in part(base, prefix).items():
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    new, old = part(model, "mm_projector."), part(base, "mm_projector.")
    assert any(new[k].shape != old[k].shape for k in new)


@pytest.mark.parametrize(
    ("model_spec", "message"),
    [
        ({"checkpoint": "x", "reinit": ["projector"]}, "unknown parts"),
        ({"preset": "tiny", "reinit": ["llm"]}, "needs model.checkpoint"),
    ],
)
def test_bad_reinit_is_refused(make_recipe, model_spec, message):
    from nvila.train.recipe import load_recipe

    with pytest.raises(nvila.ConfigError, match=message):
        load_recipe(make_recipe("bad", model=model_spec))


def test_activation_checkpointing_gives_the_same_losses(make_recipe, recwarn):
    plain = make_recipe("plain", max_steps=3)
    recomputed = make_recipe("recomputed", max_steps=3, activation_checkpointing=True)
    assert main(["train", "--recipe", plain]) == 0
    assert main(["train", "--recipe", recomputed]) == 0
    a, b = losses(Path(plain).parent / "plain"), losses(Path(recomputed).parent / "recomputed")
    assert list(a) == list(b) == [1, 2, 3]
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5)
    messages = [str(w.message).lower() for w in recwarn]
    assert not [m for m in messages if "checkpointing" in m and "deprecat" in m]


@pytest.mark.parametrize("timestamps", [False, True])
def test_video_timestamps_reach_the_training_prompts(make_recipe, tmp_path, timestamps):
    """`data.video_timestamps` writes each video's frame times into the prompts the trainer tokenizes."""
    frames = np.zeros((8, 56, 56, 3), np.uint8)
    frames[4:] = 255
    encode_mp4(tmp_path / "v.mp4", frames, fps=4)
    record = {"id": "v", "video": "v.mp4", "conversations": [{"from": "human", "value": "<vila/video>\nWhen?"}]}
    record["conversations"].append({"from": "gpt", "value": "1.0 - 2.0 seconds"})
    (tmp_path / "videos.jsonl").write_text(json.dumps(record) + "\n")
    recipe = load_recipe(make_recipe(data__train=str(tmp_path / "videos.jsonl"), data__video_timestamps=timestamps))
    trainer = Trainer(recipe)
    trainer.setup()
    prompt = trainer.processor.tokenizer.decode(trainer.dataset[0].input_ids)
    assert ("The video frames were sampled at 0." in prompt) is timestamps
    assert "1.0 - 2.0 seconds" in prompt


@pytest.mark.parametrize("packing", [False, True])
def test_single_turns_train_every_question_of_a_video_record_as_a_branch(make_recipe, tmp_path, packing):
    """`data.single_turns`: a record of several questions about a video trains them as branches after one copy of
    the video (frame times included), and a run over such records learns."""
    frames = np.zeros((8, 56, 56, 3), np.uint8)
    frames[4:] = 255
    encode_mp4(tmp_path / "v.mp4", frames, fps=4)
    turns = [("<vila/video>\nWhen does it turn white?", "1.0 - 2.0 seconds"), ("What colour is it first?", "black")]
    conversations = [{"from": f, "value": v} for q, a in turns for f, v in (("human", q), ("gpt", a))]
    lines = [json.dumps({"id": f"v{i}", "video": "v.mp4", "conversations": conversations}) for i in range(8)]
    (tmp_path / "videos.jsonl").write_text("\n".join(lines) + "\n")
    path = make_recipe(
        "branches",
        data__train=str(tmp_path / "videos.jsonl"),
        data__single_turns=True,
        data__video_timestamps=True,
        data__packing=packing,
        max_steps=8,
    )
    trainer = Trainer(load_recipe(path))
    trainer.setup()
    sample = trainer.dataset[0]
    prompt = trainer.processor.tokenizer.decode(sample.input_ids)
    assert len(sample.branches) == 2 and prompt.count("The video frames were sampled at") == 1
    assert main(["train", "--recipe", path]) == 0
    curve = losses(Path(path).parent / "branches")
    assert len(curve) == 8 and curve[8] < curve[1]
