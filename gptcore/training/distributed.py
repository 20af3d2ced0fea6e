"""Several training processes with PyTorch's own engine (``torchrun``, DistributedDataParallel).

``torchrun --nproc_per_node=N -m gptcore train ...`` starts N copies of the command with RANK, WORLD_SIZE
and LOCAL_RANK set; :func:`join` turns that into a process group (gloo on CPUs, NCCL on GPUs, one GPU per
process), and a single process is simply a group of one that needs no collective calls at all.

The data stream is shared, not split: every process draws the same micro-batch starts from the same seeded
sampler and keeps its own share, so step t of a run sees the same global batch whatever N is, and a run
can resume with another N. Rank 0 alone writes checkpoints, metrics, the draft and the log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..config import device_kind
from ..errors import ConfigError


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_here: bool = False  # this process group was created by join(), so leave() ends it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the processes (itself in a single process)."""
        if not self.enabled:
            return value
        value = value.detach().clone().float()
        dist.all_reduce(value)
        return value / self.world_size

    def agree(self, seconds: float, flag: bool, device: torch.device) -> tuple[float, bool]:
        """The largest ``seconds`` over the processes and whether any raised ``flag``: with one clock and one
        stop request for all, every process paces its learning rate alike and stops at the same step."""
        if not self.enabled:
            return seconds, flag
        value = torch.tensor([seconds, 1.0 if flag else 0.0], dtype=torch.float64, device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return float(value[0]), bool(value[1])

    def gather(self, obj) -> list:
        """Every process's ``obj``, in rank order (a list of one in a single process)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def join(device_setting: str) -> tuple[Group, str]:
    """The process group this process belongs to (from torchrun's environment) and the device it trains on:
    with CUDA each process takes the GPU of its LOCAL_RANK."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Group(), device_setting
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    kind = device_kind(device_setting)
    use_cuda = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
    if kind == "mps":
        raise ConfigError("several processes need CUDA or the CPU; Apple's MPS has no distributed backend")
    device = f"cuda:{local_rank}" if use_cuda else "cpu"
    started = not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                                device_id=torch.device(device) if use_cuda else None)
    return Group(rank, world_size, local_rank, started), device


def leave(group: Group) -> None:
    if group.started_here and dist.is_initialized():
        dist.destroy_process_group()
