"""A run's checkpoints: what they hold, written only when every tensor is finite, read back by --resume.

``last.pth`` and ``best.pth`` must never hold a broken state: a NaN stop leaves the previous files as
they are, and a state with a non-finite weight or buffer (BatchNorm statistics included) is refused.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtkd import dist
from mtkd.checkpoint import load_checkpoint, save_checkpoint
from mtkd.engine.utils import get_rng_state, set_rng_state
from mtkd.registry import MODELS


class NonFiniteStateError(Exception):
    """The run's weights or statistics hold NaN/inf; nothing was written, the previous checkpoints stand."""


@dataclass
class LoopState:
    """Where the run is; saved in every checkpoint so ``--resume`` continues exactly."""

    epoch: int = 0            # epochs completed
    iter: int = 0             # optimizer steps done
    batch_in_epoch: int = 0   # batches of epoch ``epoch`` already trained (mid-epoch checkpoints)
    best: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0        # evaluations since the last new best (early stopping)
    epoch_sums: dict = field(default_factory=dict)  # each loss term summed over the epoch's steps so far


def save_run(run: Any, name: str) -> Path:
    """Rank 0 writes ``work_dir/name`` atomically, unless a tensor is not finite; other ranks wait.

    The epoch's running loss sums are summed over the ranks (a collective) and kept in the loop state, so a
    mid-epoch resume ends the epoch with the same means; so does the task weighting's ``sync()`` for its own
    running state (DWA). Raises NonFiniteStateError (on every rank).
    """
    path = run.work_dir / name
    run.state.epoch_sums = {k: float(dist.all_reduce(v, "sum")) for k, v in run.epoch_sums.items()}
    sync = getattr(getattr(run.model, "task_weighting", None), "sync", None)
    if sync is not None:  # a collective: the ranks' task-weighting state made equal (DWA's running sums)
        sync()
    state = checkpoint_state(run)
    bad = nonfinite_tensors(state)
    if dist.all_reduce(torch.tensor([float(bool(bad))]), "max").item() > 0:
        raise NonFiniteStateError(f"the model holds non-finite values ({', '.join(bad[:5]) or 'on another rank'}"
                                  f"{', ...' if len(bad) > 5 else ''}); {path} was not written")
    if run.info.is_main:
        save_checkpoint(state, path)
    dist.barrier()
    return path


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point model tensors (weights and buffers) of a checkpoint that hold NaN/inf."""
    bad = []
    for group in ("state_dict", "train_state_dict", "ema_state_dict"):
        for key, value in (state.get(group) or {}).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                bad.append(f"{group}.{key}" if group != "state_dict" else key)
    return bad


def checkpoint_state(run: Any) -> dict:
    """Everything ``--resume`` and ``tools/test.py`` need (see ``mtkd.checkpoint`` for the keys)."""
    model, ema = run.model, run.ema
    inference = ema.module if ema is not None else model.inference_model
    ckpt = {
        "state_dict": inference.state_dict(),
        "model_config": inference_config(run.cfg.model),
        "num_classes": run.num_classes,
        "class_names": run.class_names,
        "config": run.cfg.to_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "loop": asdict(run.state),
        "rng": get_rng_state(),
    }
    if ema is not None or model is not model.inference_model:
        ckpt["train_state_dict"] = model.state_dict()
    if ema is not None:
        ckpt["ema_state_dict"] = ema.state_dict()
    ckpt.update(teacher_record(model))
    return ckpt


def inference_config(model_cfg) -> dict:
    """The config of the model that is evaluated and saved (a Distiller's student, else the model).

    A model class that trains something other than what it deploys says so with a static
    ``inference_config(cfg) -> dict``; the default is the model config itself.
    """
    plain = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)
    model_type = MODELS.get(plain["type"]) if isinstance(plain["type"], str) else plain["type"]
    select = getattr(model_type, "inference_config", None)
    return select(plain) if select is not None else plain


def restore_run(path, run: Any) -> LoopState:
    """Load everything ``--resume`` needs; a weights-only checkpoint is an error that says so.

    The epoch's running loss sums (the sum over ranks) go back to rank 0 only, since the epoch mean
    divides the ranks' sums by the world size.
    """
    ckpt = load_checkpoint(path, map_location=run.device)
    missing = [k for k in ("optimizer", "scheduler", "loop", "rng") if k not in ckpt]
    if missing:
        raise KeyError(f"{path} cannot be resumed from: it lacks {missing} (a weights-only checkpoint?)")
    check_teacher_record(ckpt, run.model, path)
    run.model.load_state_dict(ckpt.get("train_state_dict", ckpt["state_dict"]))
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None and "ema_state_dict" in ckpt:
        run.ema.load_state_dict(ckpt["ema_state_dict"])
    set_rng_state(ckpt["rng"])
    state = LoopState(**ckpt["loop"])
    keep = run.info.is_main and state.batch_in_epoch > 0
    run.epoch_sums = {k: torch.tensor(v if keep else 0.0, dtype=torch.float32, device=run.device)
                      for k, v in state.epoch_sums.items()}
    return state


# -- a Distiller's teacher set (#16): recorded in every checkpoint, the same one required by --resume ---------
def teacher_record(model: Any) -> dict:
    """``{"teachers": {name: {checkpoint, weights_sha256, tasks, feature_kd}}}`` for a model with teachers
    (a Distiller's ``teacher_fingerprint()``), else ``{}``."""
    fingerprint = getattr(model, "teacher_fingerprint", None)
    return {"teachers": fingerprint()} if fingerprint is not None else {}


def check_teacher_record(ckpt: dict, model: Any, path) -> None:
    """A resumed Distiller must have the teachers its run had (``check_teachers`` raises, naming what changed);
    a checkpoint without the record (older ones) is not checked."""
    check = getattr(model, "check_teachers", None)
    if check is not None and "teachers" in ckpt:
        check(ckpt["teachers"], str(path))
