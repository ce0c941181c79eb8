"""Training: recipes (YAML), the trainer loop, optimiser / schedule, resumable state, distributed setup."""

from nvila.train.recipe import Recipe, load_recipe
from nvila.train.trainer import Trainer, run_recipe

__all__ = ["Recipe", "Trainer", "load_recipe", "run_recipe"]
