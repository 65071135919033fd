"""Cross-rank reductions for the metrics; each one is a no-op in a single process.

Metrics gather their raw state (confusion matrix, hit counts, detections), never per-rank averages, so
every rank computes the global result. Every function here is a collective under DDP: call it on all ranks.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def reduce_device(tensor: torch.Tensor | None = None) -> torch.device:
    """Where a reduction must run: the tensor's device, or the current GPU when the backend is NCCL."""
    if is_distributed() and dist.get_backend() == "nccl":
        if tensor is not None and tensor.is_cuda:
            return tensor.device
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device if tensor is not None else torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A reduced copy of ``tensor`` (``op``: ``"sum"`` or ``"max"``) on ``tensor``'s device."""
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if op not in ops:
        raise ValueError(f"all_reduce: op must be one of {sorted(ops)}, got {op!r}")
    if not is_distributed():
        return tensor.clone()
    reduced = tensor.to(reduce_device(tensor), copy=True)
    dist.all_reduce(reduced, op=ops[op])
    return reduced.to(tensor.device)


def all_gather_objects(obj) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
