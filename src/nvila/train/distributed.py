"""Process groups (torchrun) and FSDP2 sharding; single-process runs pass through unchanged.

Launch: `torchrun --nproc-per-node N -m nvila.cli train --recipe ...` (multi-node: add --nnodes,
--node-rank, --rdzv-endpoint). NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device_type: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def shard_model(model: NVILAForConditionalGeneration, device: torch.device) -> None:
    """FSDP2: shard every tower and decoder layer, then the rest, across the process group."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for layer in model.vision_tower.model.encoder.layers:
        fully_shard(layer, mesh=mesh)
    for layer in model.llm.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def shutdown(state: Dist) -> None:
    if state.enabled and dist.is_initialized():
        dist.destroy_process_group()
