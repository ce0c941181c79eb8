"""The SigLIP vision tower (transformers' `SiglipVisionModel`) and its feature selection.

Owns: building the tower from `VisionConfig` and returning patch features of the selected hidden layer.
Does not own: pixel preprocessing (`nvila.models.nvila.image_processing_nvila`) or multi-scale merging (`dynamic_s2`).
Shapes: n tiles, s pixels per side, p = s / patch_size patches per side, c tower width.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from nvila.models.nvila.configuration_nvila import VisionConfig


def siglip_config(cfg: VisionConfig) -> SiglipVisionConfig:
    """The transformers config of a SigLIP tower of these sizes (no pooling head, as NVILA)."""
    return SiglipVisionConfig(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        layer_norm_eps=cfg.layer_norm_eps,
        hidden_act=cfg.hidden_act,
        vision_use_head=False,
    )


class VisionTower(nn.Module):
    """SigLIP returning the patch features of hidden layer `select_layer` (no CLS token in SigLIP)."""

    def __init__(self, cfg: VisionConfig, select_layer: int = -2) -> None:
        super().__init__()
        self.model = SiglipVisionModel(siglip_config(cfg))
        self.select_layer = select_layer

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[n, 3, s, s] normalised pixels -> [n, p*p, c] features of the selected layer."""
        dtype = self.model.embeddings.patch_embedding.weight.dtype
        out = self.model(pixel_values.to(dtype), output_hidden_states=True)
        return out.hidden_states[self.select_layer]
