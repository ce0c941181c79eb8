"""What a fine-tuning method trains: LoRA / QLoRA on the LLM, and the tower frozen, LayerNorm-only, LoRA or full.

Owns: the `FinetuneSpec`, the LoRA target patterns (attention and MLP projections of the LLM and of the tower),
injecting peft's LoRA layers into an `NVILAForConditionalGeneration` in place (module names and the three parts
stay where the trainer and optimiser expect them), the LayerNorm selection of the tower, the 4-bit NF4 LLM of
QLoRA (bitsandbytes, CUDA only) and a fingerprint of base weights. The projector always trains (NVILA fine-tunes
it with every method). Learning rates are the optimiser's job (`nvila.train.optim`: the tower at
lr * vision_lr_ratio, LoRA factors of the tower included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from nvila.errors import ConfigError
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration

METHODS = ("full", "lora", "qlora")  #: what happens to the LLM
BASE_DTYPES = ("float32", "bfloat16")  #: how the frozen base weights are held
VISION_MODES = ("frozen", "layernorm", "lora", "full")  #: what happens to the vision tower

#: LoRA targets, matched by peft against full module names (re.fullmatch).
LLM_TARGETS = r"llm\.model\.layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
TOWER_TARGETS = (
    r"vision_tower\.model\.(?:vision_model\.)?encoder\.layers\.\d+\.(?:self_attn\.(?:[qkv]|out)_proj|mlp\.fc[12])"
)
ADAPTER_NAME = "default"


@dataclass
class FinetuneSpec:
    """A fine-tuning method: what trains in the LLM and in the tower, and the LoRA shape."""

    method: str = "lora"  #: LLM: "full" (all weights), "lora", "qlora" (LoRA over a 4-bit NF4 LLM; CUDA only)
    vision: str = "layernorm"  #: tower: "frozen", "layernorm" (LayerNorm weights/biases only), "lora", "full"
    lora_rank: int = 16
    lora_alpha: float = 32.0  #: LoRA scale = alpha / rank
    lora_dropout: float = 0.0
    #: dtype of the frozen base weights ("bfloat16" halves their memory; trainable tensors stay float32 and the
    #: forward runs under bf16 autocast)
    base_dtype: str = "float32"

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown fine-tuning method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.vision not in VISION_MODES:
            raise ConfigError(f"unknown vision mode {self.vision!r}; use one of {', '.join(VISION_MODES)}")
        if self.base_dtype not in BASE_DTYPES:
            raise ConfigError(f"unknown base dtype {self.base_dtype!r}; use one of {', '.join(BASE_DTYPES)}")
        if self.lora_rank < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ConfigError(
                f"LoRA needs rank >= 1, alpha > 0 and 0 <= dropout < 1; got rank {self.lora_rank}, "
                f"alpha {self.lora_alpha}, dropout {self.lora_dropout}"
            )

    @property
    def lora_targets(self) -> str | None:
        """The peft `target_modules` pattern, or None when no part uses LoRA."""
        parts = []
        if self.method in ("lora", "qlora"):
            parts.append(LLM_TARGETS)
        if self.vision == "lora":
            parts.append(TOWER_TARGETS)
        return "|".join(f"(?:{p})" for p in parts) or None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def layernorm_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Weights and biases of every `nn.LayerNorm` inside `module` (SigLIP: layer_norm1/2 per layer, post_layernorm)."""
    return [p for m in module.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)]


def lora_config(spec: FinetuneSpec):
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=spec.lora_targets,
        bias="none",
    )


def apply_finetune(model: NVILAForConditionalGeneration, spec: FinetuneSpec):
    """Set up `model` in place for `spec`: inject LoRA layers, then choose what trains.

    Returns peft's `PeftModel` wrapper when a part uses LoRA (its `base_model.model` is `model`, now holding the
    LoRA layers; use it to save adapters or merge), else None. Call `quantize_llm_4bit` first for QLoRA.
    """
    spec.validate()
    model.requires_grad_(False)
    peft_model = None
    if spec.lora_targets is not None:
        from peft import get_peft_model

        with quiet_peft_probe():
            peft_model = get_peft_model(model, lora_config(spec), adapter_name=ADAPTER_NAME)  # freezes all but LoRA
    model.mm_projector.requires_grad_(True)
    if spec.method == "full":
        model.llm.requires_grad_(True)
    if spec.vision == "full":
        model.vision_tower.requires_grad_(True)
    elif spec.vision == "layernorm":
        for param in layernorm_parameters(model.vision_tower):
            param.requires_grad_(True)
    for param in model.parameters():  # trainable tensors (and AdamW's moments) in full precision
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return peft_model


@contextlib.contextmanager
def quiet_peft_probe() -> Iterator[None]:
    """Hide the FutureWarning transformers 5.25 gives when peft probes `model.is_gradient_checkpointing` (peft's
    wrapping reads it; nothing for a user to change)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def trainable_counts(model: NVILAForConditionalGeneration) -> dict[str, int]:
    """Trainable parameters per part (the trainer logs these)."""
    return {
        part: sum(p.numel() for p in getattr(model, part).parameters() if p.requires_grad)
        for part in ("vision_tower", "mm_projector", "llm")
    }


# ---- QLoRA ------------------------------------------------------------------------------------------------
def check_qlora(device: torch.device | str) -> None:
    """Raise `ConfigError` saying why QLoRA cannot run here (bitsandbytes 4-bit kernels need CUDA)."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ConfigError(
            "QLoRA needs bitsandbytes' 4-bit (NF4) matmuls, which run on NVIDIA GPUs (CUDA) only, and "
            f"{'this machine has no CUDA device' if not torch.cuda.is_available() else f'the device is {device}'}; "
            "use --method lora here (same adapters, 16/32-bit base), or run QLoRA on a GPU with --device cuda"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("QLoRA needs bitsandbytes: pip install bitsandbytes (or use --method lora)") from None


def quantize_llm_4bit(model: NVILAForConditionalGeneration, device: torch.device) -> int:
    """Replace the LLM decoder's linear layers by bitsandbytes NF4 `Linear4bit` on `device`; returns how many.

    Embeddings, norms and the LM head stay in full precision (as QLoRA does); weights are quantized when
    moved to the GPU. peft then puts its LoRA layers over the 4-bit ones.
    """
    check_qlora(device)
    import bitsandbytes as bnb

    count = 0
    for parent in list(model.llm.model.layers.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            quantized = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=torch.bfloat16,
                quant_type="nf4",
                device="meta",
            )
            quantized.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4")
            if child.bias is not None:
                quantized.bias = nn.Parameter(child.bias.data.clone(), requires_grad=False)
            setattr(parent, name, quantized.to(device))  # quantizes the weight
            count += 1
    return count


# ---- base identity ----------------------------------------------------------------------------------------
def base_fingerprint(model: nn.Module) -> str:
    """A short hash of the base weights (first 256 values of every tensor, in bf16, with names).

    Computed on the base as loaded, before any adapter or training, so adapters can check they are being put
    back on the weights they were trained on. bf16 makes it independent of loading in float32 or bfloat16.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        head = tensor.detach().flatten()[:256].to("cpu", torch.bfloat16)
        digest.update(head.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]
