"""The SigLIP vision tower (transformers' `SiglipVisionModel`) and its feature selection.

Owns: building the tower from its transformers config (`configuration_pretrained.siglip_config`) and returning
patch features of the selected hidden layer.
Does not own: pixel preprocessing (`nvila.models.nvila.image_processing_nvila`) or multi-scale merging (`dynamic_s2`).
Shapes: n tiles, s pixels per side, p = s / patch_size patches per side, c tower width.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel


class VisionTower(nn.Module):
    """SigLIP returning the patch features of hidden layer `select_layer` (no CLS token in SigLIP)."""

    def __init__(self, config: SiglipVisionConfig, select_layer: int = -2) -> None:
        super().__init__()
        self.model = SiglipVisionModel(config)
        self.select_layer = select_layer

    @property
    def device(self) -> torch.device:
        return self.model.embeddings.patch_embedding.weight.device

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[n, 3, s, s] normalised pixels -> [n, p*p, c] features of the selected layer."""
        dtype = self.model.embeddings.patch_embedding.weight.dtype
        out = self.model(pixel_values.to(dtype), output_hidden_states=True)
        return out.hidden_states[self.select_layer]
