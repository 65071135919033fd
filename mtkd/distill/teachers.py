"""A Distiller's teachers: which exist, which task or feature link each teaches, built frozen from checkpoints.

Two config forms, one meaning:
    teacher_checkpoint=PATH [, teacher=MODEL_CFG]        one teacher, named ``"teacher"``, for every task and link
    teachers=dict(NAME=dict(checkpoint=PATH, config=MODEL_CFG or None), ...)
        with ``tasks.<task>.teacher=NAME`` and ``feature_kd[i].teacher=NAME`` (optional when there is one teacher)

A teacher is built from ``config`` (None: the model config saved in its checkpoint) and loaded strictly. It
needs only the heads of the tasks it teaches (a single-task specialist has one head); each of those heads must
give the student's class count and output signature. Every teacher runs once per batch under ``no_grad``, in
eval mode, frozen, and is never part of a ``state_dict``.
"""
from __future__ import annotations

import difflib
import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from mtkd.checkpoint import CheckpointError, load_checkpoint
from mtkd.config import import_custom_modules
from mtkd.models.multitask import check_distillable
from mtkd.registry import MODELS
from mtkd.structures import FEATS_KEY

DEFAULT_TEACHER = "teacher"            # the one teacher of the ``teacher_checkpoint=`` form
TEACHER_KEYS = ("checkpoint", "config")
RESERVED = ("specs", "teaches", "with_feats", "digests")   # TeacherSet's attributes: no teacher's name


def train_teacher_hint(where: str) -> str:
    return ("train the teacher first, e.g. `python tools/train.py configs/teacher.py` (or `python tools/train.py "
            "configs/demo/teacher.py` for the CPU demo; configs/demo/teacher_<task>.py for a one-task specialist), "
            f"then pass its best.pth: `--cfg-options {where}=work_dirs/<teacher config name>/best.pth`")


class TeacherSetChanged(ValueError):
    """``--resume`` with other teachers (names, weights or the tasks they teach) than the checkpoint's run."""


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher as configured: its name, checkpoint, model config (None: the checkpoint's) and config key."""

    name: str
    checkpoint: str
    config: dict | None
    where: str   # its checkpoint's config key, for messages: model.teacher_checkpoint / model.teachers.N.checkpoint


def parse_teachers(teacher_checkpoint: Any, teacher: Mapping | None,
                   teachers: Mapping | None) -> dict[str, TeacherSpec]:
    """``{name: TeacherSpec}`` from either config form (see the module docstring); anything else is an error."""
    if teachers is not None and (teacher_checkpoint is not None or teacher is not None):
        raise ValueError("Distiller: give either model.teacher_checkpoint (and model.teacher), one teacher for every "
                         "task, or model.teachers=dict(name=dict(checkpoint=..., config=...)), not both")
    if teachers is None:
        if teacher_checkpoint is None:
            raise ValueError("Distiller: no teacher: set model.teacher_checkpoint=PATH (one teacher for every task) "
                             "or model.teachers=dict(name=dict(checkpoint=PATH), ...); to get one, "
                             + train_teacher_hint("model.teacher_checkpoint"))
        return {DEFAULT_TEACHER: TeacherSpec(DEFAULT_TEACHER, str(teacher_checkpoint), _model_cfg(teacher, "teacher"),
                                             "model.teacher_checkpoint")}
    if not isinstance(teachers, Mapping) or not teachers:
        raise ValueError(f"Distiller: model.teachers must be a non-empty dict {{name: dict(checkpoint=PATH, "
                         f"config=None)}}, got {teachers!r}")
    specs = {}
    for name, cfg in teachers.items():
        where = f"model.teachers.{name}"
        if not isinstance(name, str) or not name or "." in name or hasattr(TeacherSet, name) or name in RESERVED:
            raise ValueError(f"Distiller: {name!r} cannot name a teacher (a non-empty name without '.', not a "
                             f"method name like 'forward')")
        if not isinstance(cfg, Mapping) or "checkpoint" not in cfg or set(cfg) - set(TEACHER_KEYS):
            raise ValueError(f"Distiller: {where} must be dict(checkpoint=PATH, config=MODEL_CFG or None), got "
                             f"{cfg!r}")
        config = _model_cfg(cfg.get("config"), f"teachers.{name}.config")
        specs[name] = TeacherSpec(name, str(cfg["checkpoint"]), config, f"{where}.checkpoint")
    return specs


def _model_cfg(cfg: Any, key: str) -> dict | None:
    if cfg is not None and not isinstance(cfg, Mapping):
        raise TypeError(f"Distiller: model.{key} must be a model config dict or None (the checkpoint's own), got "
                        f"{cfg!r}")
    return None if cfg is None else dict(cfg)


def pick_teacher(where: str, given: Any, specs: Mapping[str, TeacherSpec]) -> str:
    """The teacher a task or link names (``given``), else the only one; unknown, several or none is an error."""
    names = list(specs)
    if given is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(f"Distiller: {where} names no teacher, and there are {len(names)} ({names}); name one, "
                         f"e.g. {where}.teacher={names[0]!r}")
    if isinstance(given, (list, tuple, set)):
        raise ValueError(f"Distiller: {where}.teacher={list(given)!r} names {len(given)} teachers; a task or link "
                         f"is taught by exactly one")
    if given not in specs:
        close = difflib.get_close_matches(str(given), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Distiller: {where}.teacher={given!r} is not a teacher; the teachers are {names}{hint}")
    return given


def check_every_teacher_used(specs: Mapping[str, TeacherSpec], task_teacher: Mapping[str, str],
                             link_teachers: list[str]) -> None:
    """A teacher that teaches no task (with a soft loss) and no feature link would run for nothing: an error."""
    used = set(task_teacher.values()) | set(link_teachers)
    for name, spec in specs.items():
        if name not in used:
            raise ValueError(f"Distiller: teacher {name!r} ({spec.checkpoint}) teaches nothing: no task with a soft "
                             f"loss names it (tasks.<task>.teacher={name!r}) and no feature_kd link does; use it or "
                             f"remove it from the config")


class TeacherSet(nn.ModuleDict):
    """The frozen teachers by name; ``forward(img)`` runs each once under ``no_grad`` and keeps what is used.

    Always in eval mode (``train()`` cannot change that) and absent from every ``state_dict`` (so never
    saved with the student, even inside a wrapper); ``fingerprint()`` records the set in run checkpoints.
    """

    def __init__(self, specs: Mapping[str, TeacherSpec], teaches: Mapping[str, list[str]], with_feats: set[str],
                 student: nn.Module):
        super().__init__()
        self.specs = dict(specs)
        self.teaches = {name: list(teaches.get(name, ())) for name in specs}   # {teacher: tasks it teaches}
        self.with_feats = set(with_feats)                                      # teachers that feature links use
        self.digests = {}
        for name, spec in specs.items():
            self[name], self.digests[name] = build_teacher(spec)
            check_teacher_fits(self[name], student, self.teaches[name], spec)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "TeacherSet":
        """Teachers stay in eval mode whatever ``mode`` is (BatchNorm statistics and dropout frozen)."""
        return super().train(False)

    def forward(self, img: Tensor) -> dict[str, dict[str, Any]]:
        """``img [B, 3, H, W]`` -> ``{teacher: {task: raw, feats: [maps] if a link uses it}}``, each run once."""
        outputs = {}
        with torch.no_grad():
            for name, teacher in self.items():
                feats = name in self.with_feats
                out = teacher(img, with_feats=feats)
                outputs[name] = {key: out[key] for key in [*self.teaches[name], *([FEATS_KEY] if feats else [])]}
        return outputs

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> dict:
        """Nothing: teacher weights are never saved with the student (mmrazor#157)."""
        return OrderedDict() if destination is None else destination

    def fingerprint(self) -> dict[str, dict]:
        """``{name: {checkpoint, weights_sha256, tasks, feature_kd}}``: what ``--resume`` compares."""
        return {name: {"checkpoint": spec.checkpoint, "weights_sha256": self.digests[name],
                       "tasks": list(self.teaches[name]), "feature_kd": name in self.with_feats}
                for name, spec in self.specs.items()}


def build_teacher(spec: TeacherSpec) -> tuple[nn.Module, str]:
    """The teacher model (``spec.config`` or its checkpoint's ``model_config``) with its weights, loaded strictly,
    and a digest of those weights."""
    try:
        ckpt = load_checkpoint(spec.checkpoint)
    except CheckpointError as err:
        raise CheckpointError(f"cannot load the checkpoint of teacher {spec.name!r}, {spec.where}="
                              f"{spec.checkpoint!r}: {err}. To get one, {train_teacher_hint(spec.where)}") from err
    cfg = dict(ckpt["model_config"] if spec.config is None else spec.config)
    if ckpt["model_config"].get("head_args") and "head_args" not in cfg:   # what its data decided (multi_label)
        cfg["head_args"] = ckpt["model_config"]["head_args"]
    import_custom_modules(ckpt["config"], f"the config stored in the teacher checkpoint {spec.checkpoint}")
    model = MODELS.build(cfg, num_classes=dict(ckpt["num_classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        source = ("its own model_config" if spec.config is None else
                  spec.where.replace("teacher_checkpoint", "teacher").replace(".checkpoint", ".config"))
        raise CheckpointError(
            f"the weights in the checkpoint of teacher {spec.name!r} ({spec.checkpoint}) do not fit its model "
            f"({source}): "
            f"{_first_lines(str(err), 12)}\nPass the teacher config it was trained with, or "
            f"{train_teacher_hint(spec.where)}") from err
    return model, weights_digest(ckpt["state_dict"])


def weights_digest(state_dict: Mapping[str, Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (about 1 s per GB on one core)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _first_lines(text: str, count: int) -> str:
    lines = text.strip().splitlines()
    more = f"\n\t... ({len(lines) - count} more lines)" if len(lines) > count else ""
    return "\n".join(lines[:count]) + more


def check_teacher_fits(teacher: nn.Module, student: nn.Module, tasks: list[str], spec: TeacherSpec) -> None:
    """For each task the teacher teaches: it has that head, with the student's class count (both numbers
    named), then the same output signature (det grid, multi-label, ...; ``check_distillable``)."""
    what = f"teacher {spec.name!r} ({spec.checkpoint})"
    for task in tasks:
        if task not in getattr(teacher, "tasks", ()):
            raise ValueError(f"{what} has no {task} head (its heads: {list(getattr(teacher, 'tasks', ()))}) but "
                             f"teaches the student's {task}: give tasks.{task}.teacher a teacher trained with a "
                             f"{task} head, or drop the {task} soft loss")
        n_teacher = getattr(teacher.heads[task], "num_classes", None)
        n_student = getattr(student.heads[task], "num_classes", None)
        if n_teacher != n_student:
            raise ValueError(f"{what} predicts {n_teacher} {task} classes but the student has {n_student} (from its "
                             f"training data); distil a teacher trained on the same classes")
    try:   # only the tasks it teaches: a specialist need not have the student's other heads
        check_distillable(teacher, SimpleNamespace(tasks=tuple(tasks), heads=student.heads))
    except ValueError as err:
        raise ValueError(f"{what} cannot teach this student: {err}") from err


def teacher_set_changes(saved: Mapping[str, Mapping], current: Mapping[str, Mapping]) -> list[str]:
    """What differs between two ``TeacherSet.fingerprint()`` records: teachers added or removed, other weights
    (the checkpoint path alone may move), other tasks or feature links taught."""
    changes = [f"teacher {name!r} was removed (it was {saved[name]['checkpoint']})" for name in saved
               if name not in current]
    changes += [f"teacher {name!r} was added ({current[name]['checkpoint']})" for name in current if name not in saved]
    for name in (n for n in current if n in saved):
        old, new = saved[name], current[name]
        if old.get("weights_sha256") != new["weights_sha256"]:
            changes.append(f"teacher {name!r} has other weights: {new['checkpoint']} (sha256 "
                           f"{new['weights_sha256'][:12]}) instead of {old.get('checkpoint')} (sha256 "
                           f"{str(old.get('weights_sha256'))[:12]})")
        if list(old.get("tasks", [])) != new["tasks"] or bool(old.get("feature_kd")) != new["feature_kd"]:
            changes.append(f"teacher {name!r} teaches tasks {new['tasks']} (feature KD: {new['feature_kd']}) "
                           f"instead of {list(old.get('tasks', []))} (feature KD: {bool(old.get('feature_kd'))})")
    return changes
