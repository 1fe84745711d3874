"""Process-group handling for runs launched by ``torchrun``.

When the environment says ``WORLD_SIZE > 1`` (``torchrun`` sets it together with
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``), the process group
is initialised from that environment: gloo on CPU, nccl on CUDA. Otherwise
everything is a single process and the helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn

__all__ = ["Dist"]


@dataclass
class Dist:
    world_size: int
    rank: int
    device: torch.device
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        want = torch.device(device)
        if world <= 1:
            return cls(1, 0, want)
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        if want.type == "cuda":
            want = torch.device("cuda", local)
            torch.cuda.set_device(want)
        created = False
        if not tdist.is_initialized():
            backend = "nccl" if want.type == "cuda" else "gloo"
            tdist.init_process_group(backend, init_method="env://")
            created = True
        return cls(tdist.get_world_size(), tdist.get_rank(), want, created)

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        if self.device.type == "cuda":
            t = t.to(self.device)
        tdist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def close(self) -> None:
        if self.initialised_here and tdist.is_initialized():
            tdist.destroy_process_group()
