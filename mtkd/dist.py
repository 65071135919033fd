"""Distributed helpers: torchrun env -> process group, rank queries, reductions.

Every function also works in a single process without ``init_process_group`` (world size 1).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the world size and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1): NCCL on CUDA, else gloo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks, in place, and return it (a no-op in one process)."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def reduce_device(tensor: torch.Tensor | None = None) -> torch.device:
    """Where a reduction must run: the tensor's device, or the current GPU when the backend is NCCL."""
    if is_dist() and dist.get_backend() == "nccl":
        if tensor is not None and tensor.is_cuda:
            return tensor.device
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device if tensor is not None else torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A reduced copy of ``tensor`` (``op``: ``"sum"`` or ``"max"``) on ``tensor``'s device."""
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if op not in ops:
        raise ValueError(f"all_reduce: op must be one of {sorted(ops)}, got {op!r}")
    if not is_dist():
        return tensor.clone()
    reduced = tensor.to(reduce_device(tensor), copy=True)
    dist.all_reduce(reduced, op=ops[op])
    return reduced.to(tensor.device)


def all_gather_objects(obj) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if not is_dist():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average a dict of floats over ranks (same keys on every rank)."""
    if not is_dist() or not values:
        return values
    keys = sorted(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    all_reduce_sum(packed)
    return {k: float(v) / get_world_size() for k, v in zip(keys, packed.tolist())}


def broadcast_object(obj):
    """Send ``obj`` from rank 0 to every rank (e.g. the work dir, a stop decision)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BN running stats) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step each rank holds
    the statistics of its own last batch; evaluating without this sync would score slightly different
    models on different shards.
    """
    if is_dist():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
