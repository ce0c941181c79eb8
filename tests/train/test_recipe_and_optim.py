"""Recipes load strictly; learning rates reach the optimiser; the schedule has the promised shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import from_name
from nvila.train.optim import build_optimizer, lr_factor, set_trainable
from nvila.train.recipe import OptimSpec, TrainableSpec, load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml"))


def test_shipped_recipes_load():
    assert len(RECIPES) >= 10  # five stages at full size and the tiny five
    for path in RECIPES:
        recipe = load_recipe(path)
        assert recipe.name and recipe.output_dir
        assert path.read_text().startswith("# nvila train --recipe")


def test_unknown_keys_and_bad_values_are_named(make_recipe):
    path = make_recipe()
    with pytest.raises(ConfigError, match="unknown recipe keys: optim.lrr"):
        load_recipe(path, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="max_steps"):
        load_recipe(path, ["max_steps=0"])
    with pytest.raises(ConfigError, match="data.media_inline"):
        load_recipe(path, ["data.media_inline=1.5"])
    with pytest.raises(ConfigError, match="nothing to train"):
        load_recipe(path, ["trainable.vision_tower=false", "trainable.mm_projector=false", "trainable.llm=false"])
    assert load_recipe(path, ["optim.lr=0.5", "data.packing=false"]).optim.lr == 0.5


def test_vision_lr_ratio_reaches_param_groups():
    model, _ = random_pretrained(from_name("tiny"))
    counts = set_trainable(model, TrainableSpec(vision_tower=True, mm_projector=True, llm=False))
    assert counts["llm"] == 0 and counts["vision_tower"] > 0
    optimizer = build_optimizer(model, OptimSpec(lr=2e-4, vision_lr_ratio=0.05))
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["vision_tower"]["lr"] == pytest.approx(1e-5)
    assert groups["projector_llm"]["lr"] == pytest.approx(2e-4)
    assert sum(p.numel() for p in groups["vision_tower"]["params"]) == counts["vision_tower"]
    assert sum(p.numel() for p in groups["projector_llm"]["params"]) == counts["mm_projector"]
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups)


def test_warmup_then_cosine():
    total = 100
    assert lr_factor(0, total, 0.03) == pytest.approx(1 / 3)
    assert lr_factor(2, total, 0.03) == pytest.approx(1.0)
    assert lr_factor(3, total, 0.03) == pytest.approx(1.0)
    mid = 3 + (total - 3) // 2
    assert lr_factor(mid, total, 0.03) == pytest.approx(0.5, abs=0.02)
    assert lr_factor(total - 1, total, 0.03) < 0.01
    factors = [lr_factor(s, total, 0.03) for s in range(3, total)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_every_objective_a_recipe_can_name_has_its_component():
    from nvila.train.objectives import OBJECTIVES, Objective
    from nvila.train.recipe import OBJECTIVE_NAMES

    assert set(OBJECTIVES) == set(OBJECTIVE_NAMES)
    assert all(issubclass(component, Objective) for component in OBJECTIVES.values())
