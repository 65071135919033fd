"""Small engine utilities: device choice, seeding, RNG state capture for exact resume."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def select_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """``"auto"``/None -> CUDA when available else CPU; ``"cuda"`` without a GPU is an error."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use --device cpu")
        return torch.device("cuda", local_rank) if requested == "cuda" else torch.device(requested)
    if requested != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; ``deterministic`` also asks torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def get_rng_state() -> dict:
    """Every RNG the training loop draws from, as tensors and plain data (checkpoint-safe)."""
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` captured."""
    py = state["python"]
    random.setstate((py[-2], tuple(int(v) for v in py[:-2]), py[-1]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_data_roots(cfg) -> None:
    """Every dataset ``data_root`` of a config (and a top-level ``data_root``) made absolute, so that a
    checkpoint's stored config finds the data from any working directory."""
    for key in list(cfg.keys()):
        loader = cfg[key]
        if key.endswith("_dataloader") and isinstance(loader, dict) and loader.get("dataset", {}).get("data_root"):
            loader["dataset"]["data_root"] = str(Path(loader["dataset"]["data_root"]).resolve())
    if cfg.get("data_root"):
        cfg["data_root"] = str(Path(cfg["data_root"]).resolve())


def set_data_root(cfg, root: str) -> None:
    """Repoint the dataset of every ``*_dataloader`` in a config at ``root`` (``--data-root``)."""
    for key in list(cfg.keys()):
        loader = cfg[key]
        if key.endswith("_dataloader") and isinstance(loader, dict) and "dataset" in loader:
            loader["dataset"]["data_root"] = root
    if "data_root" in cfg:
        cfg["data_root"] = root
