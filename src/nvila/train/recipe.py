"""Training recipes: typed, YAML-backed, with `key.sub=value` command-line overrides.

A recipe says where the model comes from (a preset or the previous stage's checkpoint), which parts train,
the optimiser and schedule, batch shape, precision and checkpointing. Unknown keys are errors that name
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nvila.errors import ConfigError
from nvila.train.fp8 import is_fp8_mode


@dataclass
class ModelSpec:
    """Where the weights come from: exactly one of `preset` (random init) or `checkpoint` (official layout).

    With a checkpoint, `overrides` may change its geometry (frames, pooling, S2 scales, projector type); a part
    whose tensor shapes change with it must be listed in `reinit` (started from seeded random weights, e.g.
    a new projector for another compression).
    """

    preset: str | None = None
    checkpoint: str | None = None
    tokenizer: str | None = None  #: folder of a tokenizer for a preset (default: the built-in small one)
    overrides: dict[str, Any] = field(default_factory=dict)  #: NVILAConfig fields changed on the preset/checkpoint
    reinit: list[str] = field(default_factory=list)  #: checkpoint parts not loaded: vision_tower, mm_projector, llm
    seed: int = 0


@dataclass
class DataSpec:
    train: str = ""  #: a .jsonl / .json records file, or a mixture .yaml (sources with ratios)
    media_root: str | None = None  #: default: the records file's folder
    max_length: int = 4096  #: tokens per sample (packed row), visual tokens included
    overlong: str = "truncate"  #: "truncate" (text after the last media token) or "skip"
    packing: bool = True  #: pack several samples per row (no padding compute)
    #: write each video's frame times before it ("The video frames were sampled at 0.0s, ..."), as
    #: `--video-timestamps` does at inference: train for the prompts the model will be asked with
    video_timestamps: bool = False
    #: train every question of a multi-question record alone after its media, as evaluation asks it: single-turn
    #: branches sharing one copy of the media (`nvila.models.nvila.branches`), not turns of one conversation
    single_turns: bool = False
    #: the fraction of records (by id) whose first question has its media straight before the text, without the
    #: newline (the form `nvila generate --image` asks a prompt without a placeholder in): train for both forms
    media_inline: float = 0.0


@dataclass
class TrainableSpec:
    vision_tower: bool = False
    mm_projector: bool = True
    llm: bool = False


@dataclass
class OptimSpec:
    lr: float = 1e-4  #: peak learning rate of the LLM and projector
    vision_lr_ratio: float = 0.1  #: vision tower LR = lr * ratio (paper: 5-50x lower than the LLM)
    weight_decay: float = 0.0  #: NVILA trains without weight decay
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.03  #: linear warm-up over this fraction of the steps, then cosine to 0
    grad_clip: float = 1.0  #: max global grad norm (0 disables)


@dataclass
class ReadingSpec:
    """Weights of the auxiliary reading losses (train/reading_loss.py; not in the paper; 0 disables each): at the
    position that predicts an answer read off a synth image, head 0 of LLM layer `layer - 1` attends to the
    question's line number (`number`), head 0 of `layer` to where the answer is written (`address`), and that
    head's output alone names the answer's first token (`copy`); the residual stream entering `layer` names every
    written word at its centre token (`words`: what the copy head's values are read from)."""

    number: float = 0.0
    address: float = 0.0
    copy: float = 0.0
    words: float = 0.0
    layer: int = 1  #: the LLM layer of the address head (the number head is in the layer before)
    #: the image tokens the address head should look at: "centre", the token at the centre of each box holding the
    #: answer's word (the word loss's token, which names the word), or "box", every token along the box
    where: str = "centre"
    #: supervise every word of an answer that is written in the image, not its first alone: the address and copy
    #: at each word's first token (head 0) and at its second (head 1 of the same layer: a title word "Sun" is
    #: tokens "S" "un", a value "37" tokens "3" "7")
    spell: bool = False
    #: the number head also attends to the question's words written in the image (a chart's label: "the value of
    #: owl"), not only its digits
    question_words: bool = False
    #: weight of the column loss: the last head of layer `layer - 1` at each chart label's token attends to the
    #: value written above it, and a value question is addressed and copied at the label the question names
    column: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.reads_answers or self.words > 0 or self.column > 0

    @property
    def reads_answers(self) -> bool:
        """Whether a loss supervises the answers (`number`, `address` or `copy`)."""
        return max(self.number, self.address, self.copy) > 0


#: The training objectives a recipe can name (`nvila.train.objectives.OBJECTIVES` holds one component each).
OBJECTIVE_NAMES = ("lm", "vision_heads")


@dataclass
class Recipe:
    name: str = "run"
    output_dir: str = "runs/run"
    #: "lm" (next-token loss on answers) or "vision_heads" (tower pre-training with answer classifiers);
    #: the components are `nvila.train.objectives.OBJECTIVES`
    objective: str = "lm"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    trainable: TrainableSpec = field(default_factory=TrainableSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    micro_batch_size: int = 8  #: samples per rank per forward
    grad_accum: int = 1  #: micro-batches per optimiser step
    max_steps: int = 100  #: length of the run (the LR schedule spans it)
    stop_after: int | None = None  #: end this job at this step, resumable later (cluster time limits)
    bf16: bool = False  #: bf16 autocast (CPU and GPU)
    #: FP8 LLM linears via torchao: false; true (NVIDIA compute capability >= 8.9); "emulate" (float8 casts with
    #: float32 matmuls on any device: FP8 numerics without the speed, slower than fp8: false). See train/fp8.py
    fp8: bool | str = False
    #: weight of the auxiliary pixel loss (train/pixel_loss.py; not in the paper): every image token also
    #: predicts the colours it covers, so the projector keeps them; 0 disables it
    pixel_loss: float = 0.0
    #: weight of the auxiliary word loss (train/word_loss.py; not in the paper): the image token where a synth
    #: document page draws a word also predicts that word's token; 0 disables it
    word_loss: float = 0.0
    reading: ReadingSpec = field(default_factory=ReadingSpec)
    activation_checkpointing: bool = False  #: recompute activations in backward (less memory, ~30% slower)
    save_every: int = 50  #: steps between resumable checkpoints
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  #: "auto" (cuda if available), "cpu", "cuda"

    def validate(self) -> None:
        if (self.model.preset is None) == (self.model.checkpoint is None):
            raise ConfigError("model: give exactly one of 'preset' or 'checkpoint'")
        unknown_parts = sorted(set(self.model.reinit) - {"vision_tower", "mm_projector", "llm"})
        if unknown_parts:
            raise ConfigError(f"model.reinit: unknown parts {unknown_parts}; use vision_tower, mm_projector, llm")
        if self.model.reinit and not self.model.checkpoint:
            raise ConfigError("model.reinit needs model.checkpoint (a preset starts all parts from random weights)")
        if not self.data.train:
            raise ConfigError("data.train: the training records file is required")
        checks = {
            "micro_batch_size": self.micro_batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "max_steps": self.max_steps >= 1,
            "stop_after": self.stop_after is None or 1 <= self.stop_after <= self.max_steps,
            "save_every": self.save_every >= 1,
            "log_every": self.log_every >= 1,
            "optim.lr": self.optim.lr > 0,
            "optim.vision_lr_ratio": self.optim.vision_lr_ratio > 0,
            "optim.warmup_ratio": 0 <= self.optim.warmup_ratio < 1,
            "optim.grad_clip": self.optim.grad_clip >= 0,
            "data.max_length": self.data.max_length >= 16,
            "data.overlong": self.data.overlong in ("truncate", "skip"),
            "data.media_inline": 0 <= self.data.media_inline <= 1,
            "objective": self.objective in OBJECTIVE_NAMES,
            "pixel_loss": self.pixel_loss >= 0 and (self.pixel_loss == 0 or self.objective == "lm"),
            "word_loss": self.word_loss >= 0 and (self.word_loss == 0 or self.objective == "lm"),
            "reading": min(
                self.reading.number, self.reading.address, self.reading.copy, self.reading.words, self.reading.column
            )
            >= 0
            and (not self.reading.enabled or (self.objective == "lm" and self.reading.layer >= 1))
            and self.reading.where in ("centre", "box"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"out-of-range recipe settings: {', '.join(bad)}")
        if not is_fp8_mode(self.fp8):
            raise ConfigError(f"fp8: expected false, true or emulate, got {self.fp8!r}")
        if not any(dataclasses.asdict(self.trainable).values()):
            raise ConfigError("trainable: nothing to train (vision_tower, mm_projector and llm are all false)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'recipe'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown recipe keys: {', '.join(f'{where}{k}' for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        nested = fields[name].default_factory if fields[name].default_factory is not dataclasses.MISSING else None
        if nested is not None and dataclasses.is_dataclass(nested) and isinstance(value, dict):
            kwargs[name] = _build(nested, value, f"{where}{name}.")
        elif name == "betas":
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"override {dotted}: {key} is not a mapping")
    tree[keys[-1]] = value


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read a YAML recipe and apply `key.sub=value` overrides (values parsed as YAML scalars)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({e})") from None
    return recipe_from_dict(data, overrides)


def recipe_from_dict(data: dict[str, Any], overrides: list[str] = ()) -> Recipe:
    """A validated `Recipe` from a (YAML-shaped) mapping and `key.sub=value` overrides; `data` is changed."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set(data, key.strip(), yaml.safe_load(raw))
    recipe = _build(Recipe, data, "")
    recipe.validate()
    return recipe
