"""Adapters: merging keeps the logits, adapters saved alone reload onto the base, mismatches are refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import nvila
from nvila.errors import CheckpointError
from nvila.factory import random_pretrained
from nvila.finetune import FinetuneSpec, FinetuneTrainer, apply_finetune, finetune_recipe, load_finetuned
from nvila.finetune.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, INFO, NON_LORA
from tests.conftest import assert_modes_follow_umask

from .conftest import save_random, tiny_config


def logits(model, processor) -> torch.Tensor:
    images = [[Image.new("RGB", (70, 40), "red")], [Image.new("RGB", (40, 90), "blue")]]
    inputs = processor(["<image>\nWhat colour is the picture?", "<image>\nDescribe it."], images)
    with torch.no_grad():
        return model(**inputs.to_model_kwargs()).logits.float()


def round_to_bf16(model) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def test_merged_lora_equals_the_adapter_model_before_and_after_save(tmp_path):
    model, processor = random_pretrained(tiny_config(), seed=0)
    base = logits(model, processor)
    peft_model = apply_finetune(model, FinetuneSpec(method="lora", vision="lora", lora_rank=4, lora_alpha=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero: give the adapters an effect to merge
        for name, p in model.named_parameters():
            if ".lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    adapted = logits(model, processor)
    assert (adapted - base).abs().max() > 1e-2
    merged = peft_model.merge_and_unload()
    assert merged is model and not any(".lora_" in k or "base_layer" in k for k in merged.state_dict())
    torch.testing.assert_close(logits(merged, processor), adapted, atol=2e-5, rtol=1e-5)
    nvila.save(merged, processor.tokenizer, tmp_path / "merged")
    reloaded, reloaded_processor = nvila.load(tmp_path / "merged")
    round_to_bf16(merged)  # the official layout stores bf16
    torch.testing.assert_close(logits(reloaded, reloaded_processor), logits(merged, processor), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def trained(base_checkpoint, tmp_path_factory):
    """A 3-step LoRA + LayerNorm run with --merge: (output folder, the trainer's final logits)."""
    from .conftest import write_colour_dataset

    root = tmp_path_factory.mktemp("trained")
    data = write_colour_dataset(root / "data")
    spec = FinetuneSpec(method="lora", vision="layernorm", lora_rank=4, lora_alpha=8)
    recipe = finetune_recipe(spec, str(base_checkpoint), str(data), str(root / "run"), lr=5e-3, vit_lr_ratio=1.0,
                             max_steps=3, micro_batch_size=4, max_length=512, device="cpu", save_every=3)  # fmt: skip
    trainer = FinetuneTrainer(recipe, spec, merge=True)
    trainer.setup()
    trainer.train()
    trainer.save_model()
    trainer.model.eval()
    return root / "run", logits(trainer.model, trainer.processor)


def test_adapters_saved_alone_reload_onto_the_base(trained, base_checkpoint):
    run, expected = trained
    adapters = run / "adapters"
    assert {p.name for p in adapters.iterdir()} >= {"adapter_config.json", ADAPTER_WEIGHTS, NON_LORA, "finetune.json"}
    with safe_open(str(adapters / ADAPTER_WEIGHTS), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("base_model.model.") and ".lora_" in k for k in keys)  # peft's names
    model, processor = nvila.load(base_checkpoint)
    tower_layernorms = {f"vision_tower.{n}" for n, m in model.vision_tower.named_modules()
                        if isinstance(m, torch.nn.LayerNorm) for n in (f"{n}.weight", f"{n}.bias")}  # fmt: skip
    projector = {f"mm_projector.{n}" for n, _ in model.mm_projector.named_parameters()}
    assert set(load_file(str(adapters / NON_LORA))) == tower_layernorms | projector
    base = logits(model, processor)
    assert (expected - base).abs().max() > 1e-3  # training changed the model
    loaded, loaded_processor = load_finetuned(base_checkpoint, adapters)
    torch.testing.assert_close(logits(loaded, loaded_processor), expected, atol=1e-5, rtol=1e-5)
    merged, _ = load_finetuned(base_checkpoint, adapters, merge=True)
    torch.testing.assert_close(logits(merged, loaded_processor), expected, atol=2e-5, rtol=1e-5)
    exported, exported_processor = nvila.load(run / "model")  # --merge: official layout, bf16
    round_to_bf16(merged)
    expected_merged = logits(merged, loaded_processor)
    torch.testing.assert_close(logits(exported, exported_processor), expected_merged, atol=1e-6, rtol=0)


def test_mismatched_adapters_are_refused(trained, base_checkpoint, tmp_path):
    adapters = trained[0] / "adapters"
    wider = save_random(tmp_path / "wider", hidden_size=64, intermediate_size=128)
    with pytest.raises(CheckpointError, match=r"another architecture .*text\.hidden_size: adapters 32, base 64"):
        load_finetuned(wider, adapters)
    other = save_random(tmp_path / "other", seed=1)
    with pytest.raises(CheckpointError, match="other weights than the base"):
        load_finetuned(other, adapters)
    load_finetuned(other, adapters, allow_other_base=True)  # on request
    bad = tmp_path / "bad"
    bad.mkdir()
    for file in adapters.iterdir():
        (bad / file.name).write_bytes(file.read_bytes())
    tensors = load_file(str(bad / ADAPTER_WEIGHTS))
    key = next(k for k in tensors if "q_proj.lora_A" in k)
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 3)
    save_file(tensors, str(bad / ADAPTER_WEIGHTS))
    with pytest.raises(CheckpointError, match=r"do not fit the base model: .*q_proj\.lora_A\.weight is \[4, 35\]"):
        load_finetuned(base_checkpoint, bad)
    save_file(load_file(str(adapters / ADAPTER_WEIGHTS)), str(bad / ADAPTER_WEIGHTS))
    config_text = (bad / ADAPTER_CONFIG).read_text()
    (bad / ADAPTER_CONFIG).write_text(config_text[:-5])
    with pytest.raises(CheckpointError, match=r"adapter_config\.json:\d+:\d+: malformed JSON"):
        load_finetuned(base_checkpoint, bad)
    (bad / ADAPTER_CONFIG).write_text(json.dumps({**json.loads(config_text), "r": "four"}))
    with pytest.raises(CheckpointError, match=r"adapter_config\.json: no valid LoRA rank 'r'"):
        load_finetuned(base_checkpoint, bad)
    (bad / ADAPTER_CONFIG).write_text(config_text)
    (bad / INFO).write_bytes(b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match=r"not UTF-8 text"):
        load_finetuned(base_checkpoint, bad)
    (bad / NON_LORA).unlink()
    with pytest.raises(CheckpointError, match="not an nvila adapters folder: missing non_lora"):
        load_finetuned(base_checkpoint, bad)


def _finetune_cli(*argv: str) -> int:
    from nvila.finetune import add_finetune_args, run_finetune

    parser = argparse.ArgumentParser()
    add_finetune_args(parser)
    return run_finetune(parser.parse_args(list(argv)))


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "losses.jsonl").read_text().splitlines())}


def test_resume_gives_the_uninterrupted_losses(base_checkpoint, colour_data, tmp_path):
    common = ["--model", str(base_checkpoint), "--data", str(colour_data), "--method", "lora", "--vision", "lora",
              "--lora-rank", "4", "--steps", "4", "--batch-size", "4", "--max-length", "512", "--lr", "3e-3",
              "--save-every", "2", "--device", "cpu"]  # fmt: skip
    assert _finetune_cli(*common, "--out", str(tmp_path / "whole")) == 0
    assert _finetune_cli(*common, "--out", str(tmp_path / "parts"), "--stop-after", "2") == 0
    state = load_file(str(tmp_path / "parts" / "state" / "model.safetensors"))
    assert state and all(".lora_" in k or k.startswith("mm_projector.") for k in state)  # trainable tensors only
    with pytest.raises(nvila.ConfigError, match="already holds a run"):
        _finetune_cli(*common, "--out", str(tmp_path / "parts"))
    with pytest.raises(nvila.ConfigError, match="other settings .*vision"):
        _finetune_cli(*common, "--out", str(tmp_path / "parts"), "--resume", "--vision", "layernorm")
    assert _finetune_cli(*common, "--out", str(tmp_path / "parts"), "--resume") == 0
    whole, parts = _losses(tmp_path / "whole"), _losses(tmp_path / "parts")
    assert list(parts) == [1, 2, 3, 4]
    for step in whole:
        assert parts[step] == pytest.approx(whole[step], rel=1e-6)


def test_full_method_without_lora_exports_the_whole_model(base_checkpoint, colour_data, tmp_path):
    out = tmp_path / "full"
    assert _finetune_cli("--model", str(base_checkpoint), "--data", str(colour_data), "--method", "full",
                         "--vision", "frozen", "--steps", "2", "--batch-size", "4", "--max-length", "512",
                         "--lr", "1e-3", "--device", "cpu", "--out", str(out)) == 0  # fmt: skip
    assert not (out / "adapters").exists()
    assert_modes_follow_umask(out)
    trained, _ = nvila.load(out / "model")
    base, _ = nvila.load(base_checkpoint)

    def same(part: str) -> bool:
        return all(
            torch.equal(a, b) for a, b in zip(getattr(trained, part).parameters(), getattr(base, part).parameters())
        )

    assert same("vision_tower") and not same("llm") and not same("mm_projector")
