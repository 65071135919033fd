"""Datasets and data loaders from config."""
from __future__ import annotations

import functools
import random
from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from mtkd import dist
from mtkd.data.collate import collate
from mtkd.structures import META_KEY
from mtkd.registry import DATASETS

LOADER_KEYS = {"dataset", "batch_size", "num_workers", "shuffle", "drop_last", "pin_memory"}


class ShardSampler(Sampler):
    """Evaluation sampler: rank r gets a contiguous shard of the indices, no padding, no duplicates,
    so metrics gathered over ranks count every image exactly once."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        per_rank = -(-size // world_size)
        self.indices = list(range(min(rank * per_rank, size), min((rank + 1) * per_rank, size)))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_dataset(cfg: Mapping):
    """A dataset from ``dict(type=..., **kwargs)`` registered in DATASETS."""
    return DATASETS.build(cfg)


def build_dataloader(cfg: Mapping, distributed: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader from ``dict(batch_size, num_workers, shuffle, drop_last, dataset=dict(type=...))``.

    Shuffled loaders use a DistributedSampler (one replica when not distributed) seeded by ``seed``: the
    order of epoch e is a function of (seed, e) after ``sampler.set_epoch(e)``. Unshuffled loaders shard
    without padding (evaluation). Augmentation draws from (seed, epoch, index) inside the dataset.
    """
    unknown = set(cfg) - LOADER_KEYS
    if unknown:
        raise KeyError(f"dataloader config: unknown key(s) {sorted(unknown)}; expected {sorted(LOADER_KEYS)}")
    if "dataset" not in cfg:
        raise KeyError("dataloader config has no 'dataset' dict")
    dataset = build_dataset(cfg["dataset"])
    dataset.seed = seed
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    drop_last = bool(cfg.get("drop_last", False))
    if cfg.get("shuffle", False):
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                     drop_last=drop_last)
    else:
        sampler = ShardSampler(len(dataset), rank, world)
    num_workers = int(cfg.get("num_workers", 2))
    fork = num_workers > 0 and _has_fork()
    return DataLoader(
        dataset, batch_size=int(cfg.get("batch_size", 16)), sampler=sampler, num_workers=num_workers,
        collate_fn=functools.partial(collate, listed=getattr(dataset, "listed_keys", (META_KEY,))), pin_memory=bool(cfg.get("pin_memory", torch.cuda.is_available())),
        drop_last=drop_last, generator=torch.Generator().manual_seed(seed), worker_init_fn=_init_worker,
        # Workers are not persistent: each epoch's workers get a copy of the dataset after set_epoch().
        persistent_workers=False, multiprocessing_context="fork" if fork else None)


def build_loader(cfg: Mapping, split: str, distributed: bool = False, seed: int = 0) -> DataLoader:
    """The ``{split}_dataloader`` of a whole config (train, val or test), built by :func:`build_dataloader`."""
    key = f"{split}_dataloader"
    if key not in cfg:
        raise KeyError(f"the config has no {key!r}; inherit a dataset config from configs/_base_/datasets/")
    return build_dataloader(cfg[key], distributed=distributed, seed=seed)


def _init_worker(worker_id: int) -> None:
    """Seed numpy and random from torch's per-worker seed (itself from the loader's seeded generator),
    and keep each worker single-threaded so workers do not fight the main process for cores."""
    import cv2
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


def _has_fork() -> bool:
    import multiprocessing
    return "fork" in multiprocessing.get_all_start_methods()
