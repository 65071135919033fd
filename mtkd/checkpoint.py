"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of plain data and tensors:
    state_dict        the inference model's weights (a MultiTaskModel: the student's for a Distiller;
                      never the teacher's)
    model_config      that MultiTaskModel's config dict, so it can be rebuilt (and used as a teacher)
    num_classes       {task: int}, taken from the training data at build time
    config            the whole merged config as plain dicts/lists (``Config.to_dict()``)
    train_state_dict  the trained module's full state when it differs from ``state_dict`` (a Distiller's
                      student + adapters, teacher excluded); for --resume
    epoch, iter, best_metric, optimizer, scheduler, scaler, rng   (training checkpoints; for --resume)
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

REQUIRED_KEYS = ("state_dict", "model_config", "num_classes", "config")


class CheckpointError(Exception):
    """A checkpoint file that is missing, unreadable, unsafe or lacks what the caller needs."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` through a temp file in the same folder and an atomic rename.

    A process killed at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = REQUIRED_KEYS) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``: nothing in the file is executed.

    Raises CheckpointError naming the file when it is missing, not a torch file, holds objects that the
    safe unpickler refuses (e.g. code), or lacks one of ``required`` keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, which could run "
            f"code when unpickled (torch.load weights_only=True said: {str(err).splitlines()[0]})") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not an mtkd checkpoint: expected a dict, got {type(ckpt).__name__}")
    missing = [key for key in required if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not an mtkd checkpoint: missing key(s) {missing} "
                              f"(has {sorted(ckpt)})")
    return ckpt


def build_model_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike = "<checkpoint>",
                                device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the inference MultiTaskModel a checkpoint describes and load its weights (strict).

    Wrong keys or shapes are an error naming the file: the weights must match ``model_config``.
    """
    from mtkd.registry import MODELS

    model = MODELS.build(ckpt["model_config"], num_classes=dict(ckpt["num_classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit the model its model_config describes: "
                              f"{str(err).splitlines()[0]}") from err
    return model.to(device).eval()
