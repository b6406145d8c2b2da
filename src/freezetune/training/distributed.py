"""Data parallelism: one copy of the model per process, each training on its share of every batch.

``torchrun`` and ``accelerate launch`` start the processes and set ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`ranks` reads them and joins the
process group (nccl on GPUs, one GPU per process; gloo on CPUs). Without them, or with
``WORLD_SIZE=1``, everything here is a no-op and training is the plain single-process loop.

What each rank does: every rank draws the same global batches (``--batch-size`` per rank times
the number of ranks, in the single-process order) and keeps the examples it owns, those whose
position ``i`` has ``i % world == rank``. A rank's loss is weighted by its share of the global
batch, so the averaged gradient equals the single-process gradient of the whole batch when the
loss is a mean over examples (classification); a causal LM's loss is a mean over target tokens, so
there it is close, not equal. Fixed
ownership is what lets each rank cache the frozen prefix of its own examples only.

Why not ``Accelerator.prepare``: a DDP-wrapped model registers its trainable parameters once,
while schedules change ``requires_grad`` and LoRA replaces modules mid-run; prepared loaders
replace the samplers whose generators resume restores; and on a CPU, Accelerate's state reports
a single process under ``torchrun``. Averaging the gradients ourselves at the optimizer step
does what DDP does and follows the plan, whatever it is.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from freezetune.core.errors import FreezetuneError

# Environment variables accelerate launch sets for engines that shard the model itself.
SHARDED_ENGINES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}
BUCKET = 2**24  # gradient elements per all-reduce: one buffer per bucket, not one per tensor


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder, logs and shows progress."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """(rank, world) for loaders that split batches; None in a single process."""
        return (self.rank, self.world) if self.world > 1 else None

    def owned(self, rows: int) -> list[int]:
        """The example positions this rank trains on and caches."""
        return list(range(self.rank, rows, self.world))

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Every rank ends with the mean of all ranks' gradients (DDP's all-reduce)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]  # the same graph on every rank: the same list
        start = 0
        while start < len(grads):
            bucket, size = [], 0
            while start < len(grads) and (not bucket or size + grads[start].numel() <= BUCKET):
                bucket.append(grads[start])
                size += grads[start].numel()
                start += 1
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat)
            flat /= self.world
            for grad, part in zip(bucket, flat.split([g.numel() for g in bucket])):
                grad.copy_(part.view_as(grad))

    def largest(self, value: float) -> float:
        """The largest of every rank's ``value``: a decision (stop on NaN, stop on a signal) all ranks share.

        A rank that stopped alone would leave the others waiting in their next all-reduce.
        """
        if self.world == 1:
            return value
        shared = torch.tensor([float(value)])
        dist.all_reduce(shared, op=dist.ReduceOp.MAX)
        return float(shared)

    def broadcast(self, model: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank, so all start from the same weights."""
        if self.world == 1:
            return
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def ranks() -> Ranks:
    """This process's ranks, joining the process group the launcher described on first call."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    for variable, engine in SHARDED_ENGINES.items():
        if os.environ.get(variable, "").lower() in ("1", "true"):
            raise FreezetuneError(
                f"freezetune trains data-parallel (a whole model per process); {engine} is not supported: "
                "choose multi-GPU (MULTI_GPU) in the accelerate config, or launch with torchrun"
            )
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # so "cuda" means this rank's GPU
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    atexit.register(_leave)
    current = Ranks(dist.get_rank(), dist.get_world_size())
    if not current.is_main:  # one voice: rank 0 logs; the others report only warnings and errors
        logging.getLogger("freezetune").setLevel(logging.WARNING)
    return current


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
