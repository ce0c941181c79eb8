"""What each fine-tuning method trains, and the tower's learning rate reaching the optimiser."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.finetune import FinetuneSpec, FinetuneTrainer, apply_finetune, finetune, finetune_recipe
from nvila.finetune.methods import check_qlora, layernorm_parameters

from .conftest import tiny_config


def _layernorm_names(module: nn.Module) -> set[str]:
    """A direct enumeration of the nn.LayerNorm modules' parameters, by name."""
    return {
        f"{name}.{param_name}"
        for name, sub in module.named_modules()
        if isinstance(sub, nn.LayerNorm)
        for param_name, _ in sub.named_parameters(recurse=False)
    }


def _trainable(module: nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def test_layernorm_tuning_trains_only_the_towers_layernorms():
    model, _ = random_pretrained(tiny_config())
    apply_finetune(model, FinetuneSpec(method="lora", vision="layernorm"))
    layernorms = _layernorm_names(model.vision_tower)
    layers = model.nvila_config.vision.num_hidden_layers
    assert len(layernorms) == 2 * (2 * layers + 1)  # layer_norm1/2 of every layer + post_layernorm; weight + bias
    assert _trainable(model.vision_tower) == layernorms
    n_layernorm = sum(p.numel() for m in model.vision_tower.modules() if isinstance(m, nn.LayerNorm)
                      for p in m.parameters())  # fmt: skip
    assert sum(p.numel() for p in model.vision_tower.parameters() if p.requires_grad) == n_layernorm
    assert {id(p) for p in layernorm_parameters(model.vision_tower)} == {
        id(p) for p in model.vision_tower.parameters() if p.requires_grad
    }
    llm = _trainable(model.llm)  # LoRA factors on q/k/v/o and gate/up/down of every decoder layer, nothing else
    assert all(".lora_" in name for name in llm)
    assert len(llm) == 7 * 2 * model.nvila_config.text.num_hidden_layers
    assert all(p.requires_grad for p in model.mm_projector.parameters())


@pytest.mark.parametrize(
    ("method", "vision"), [("lora", "frozen"), ("lora", "lora"), ("full", "full"), ("full", "layernorm")]
)
def test_each_mode_trains_its_parts(method, vision):
    model, _ = random_pretrained(tiny_config())
    peft_model = apply_finetune(model, FinetuneSpec(method=method, vision=vision, lora_rank=4))
    tower, llm = _trainable(model.vision_tower), _trainable(model.llm)
    assert (peft_model is None) == (method == "full" and vision != "lora")
    if vision == "frozen":
        assert tower == set()
    elif vision == "lora":  # q/k/v/out and fc1/fc2 of every tower layer
        assert all(".lora_" in n for n in tower) and len(tower) == 6 * 2 * model.nvila_config.vision.num_hidden_layers
    elif vision == "full":
        assert tower == {n for n, _ in model.vision_tower.named_parameters()}
    if method == "full":
        assert llm == {n for n, _ in model.llm.named_parameters()}


def test_vit_lr_ratio_reaches_the_param_groups_and_only_layernorms_move(base_checkpoint, colour_data, tmp_path):
    spec = FinetuneSpec(method="lora", vision="layernorm", lora_rank=4)
    settings = {"max_steps": 2, "micro_batch_size": 4, "max_length": 512, "device": "cpu"}
    recipe = finetune_recipe(
        spec, str(base_checkpoint), str(colour_data), str(tmp_path / "run"), lr=1e-3, vit_lr_ratio=0.05, **settings
    )
    trainer = FinetuneTrainer(recipe, spec)
    trainer.setup()
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["vision_tower"]["base_lr"] == pytest.approx(5e-5)
    assert groups["projector_llm"]["base_lr"] == pytest.approx(1e-3)
    tower = trainer.model.vision_tower
    assert {id(p) for p in groups["vision_tower"]["params"]} == {id(p) for p in layernorm_parameters(tower)}
    lora = [p for n, p in trainer.model.llm.named_parameters() if ".lora_" in n]
    rest = {id(p) for p in groups["projector_llm"]["params"]}
    assert rest == {id(p) for p in lora} | {id(p) for p in trainer.model.mm_projector.parameters()}
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.step()
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    tower_moved = {n.removeprefix("vision_tower.") for n in moved if n.startswith("vision_tower.")}
    assert tower_moved and tower_moved <= _layernorm_names(tower)
    assert all(".lora_" in n for n in moved if n.startswith("llm."))


def test_bad_specs_are_refused():
    with pytest.raises(ConfigError, match="unknown fine-tuning method"):
        FinetuneSpec(method="dora").validate()
    with pytest.raises(ConfigError, match="vision mode"):
        FinetuneSpec(vision="bias").validate()
    with pytest.raises(ConfigError, match="rank >= 1"):
        FinetuneSpec(lora_rank=0).validate()


def test_qlora_without_cuda_is_a_clear_error(base_checkpoint, colour_data, tmp_path):
    with pytest.raises(ConfigError, match="CUDA"):
        check_qlora("cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: QLoRA can run")
    spec = FinetuneSpec(method="qlora")
    recipe = finetune_recipe(spec, str(base_checkpoint), str(colour_data), str(tmp_path / "q"), max_steps=1)
    with pytest.raises(ConfigError, match="QLoRA needs bitsandbytes' 4-bit .* no CUDA device; use --method lora"):
        finetune(recipe, spec)
    assert not (tmp_path / "q").exists()  # refused before anything was written


def test_a_bf16_base_keeps_the_trainable_tensors_in_float32(base_checkpoint, colour_data, tmp_path):
    spec = FinetuneSpec(method="lora", vision="layernorm", lora_rank=4, base_dtype="bfloat16")
    settings = {"max_steps": 1, "micro_batch_size": 4, "max_length": 512, "device": "cpu"}
    recipe = finetune_recipe(spec, str(base_checkpoint), str(colour_data), str(tmp_path / "bf16"), **settings)
    assert recipe.bf16  # autocast: bf16 frozen weights next to float32 trainable ones
    trainer = FinetuneTrainer(recipe, spec)
    trainer.setup()
    assert {(p.requires_grad, p.dtype) for p in trainer.model.parameters()} == {
        (True, torch.float32),
        (False, torch.bfloat16),
    }
    assert torch.isfinite(torch.tensor(trainer.step()["loss"]))
    with pytest.raises(ConfigError, match="unknown base dtype"):
        FinetuneSpec(base_dtype="float16").validate()


def test_the_cli_choices_match_the_library_and_building_the_parser_imports_no_torch():
    import subprocess
    import sys

    from nvila.finetune import cli, methods

    assert (cli.METHODS, cli.VISION_MODES, cli.BASE_DTYPES) == (
        methods.METHODS,
        methods.VISION_MODES,
        methods.BASE_DTYPES,
    )
    code = (
        "import argparse, sys; from nvila.finetune.cli import add_finetune_args; "
        "from nvila.prune.cli import add_prune_args; add_finetune_args(argparse.ArgumentParser()); "
        "add_prune_args(argparse.ArgumentParser()); print('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs an NVIDIA GPU (bitsandbytes 4-bit kernels)")
def test_qlora_trains_lora_over_a_4bit_llm(base_checkpoint, colour_data, tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    from nvila.finetune import load_finetuned

    spec = FinetuneSpec(method="qlora", vision="layernorm", lora_rank=4)
    settings = {"max_steps": 3, "micro_batch_size": 4, "max_length": 512, "device": "cuda", "save_every": 3}
    recipe = finetune_recipe(spec, str(base_checkpoint), str(colour_data), str(tmp_path / "q"), lr=3e-3, **settings)
    trainer = FinetuneTrainer(recipe, spec)
    trainer.setup()
    quantized = [m for m in trainer.model.llm.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 7 * trainer.model.nvila_config.text.num_hidden_layers
    losses = [trainer.step()["loss"] for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    trainer.save_model()
    model, _ = load_finetuned(base_checkpoint, tmp_path / "q" / "adapters", merge=True)
    assert not any(".lora_" in name for name in model.state_dict())
