"""The multi-task Distiller: a student trained on ground truth and on frozen teachers, task by task."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtkd.distill.teachers import (TeacherSet, TeacherSetChanged, check_every_teacher_used, parse_teachers,
                                   pick_teacher, teacher_set_changes)
from mtkd.models.task_weighting import build_task_weighting
from mtkd.registry import MODELS
from mtkd.structures import FEATS_KEY, IMG_KEY, TOWERS_KEY, has_labels

TASK_KEYS = ("alpha", "ratio", "loss", "teacher")
FEATURE_KD_KEYS = ("student_level", "teacher_level", "loss", "weight", "teacher")


@dataclass(frozen=True)
class TaskKD:
    """How one task is distilled: ``L_t = (1 - alpha) * H_t + alpha * S_t``, weighted by ``ratio``; ``teacher``:
    the teacher it names (None: the only one)."""

    alpha: float
    ratio: float
    teacher: Any = None


@dataclass(frozen=True)
class FeatureLink:
    """One feature-KD pair: student neck level -> a teacher's neck level, with its weight."""

    student_level: int
    teacher_level: int
    weight: float
    teacher: str = "teacher"


@MODELS.register_module()
class Distiller(nn.Module):
    """Student ``MultiTaskModel`` + frozen teachers; ``forward(batch)`` returns the loss dict to minimise.

    Per task t: ``t/hard`` (the student's ground-truth loss), ``t/soft`` (its soft loss against its teacher),
    ``t/total = (1 - alpha_t) * hard + alpha_t * soft``; ``loss = task_weighting({t: total_t})`` (by default
    ``FixedWeighting``: ``sum_t ratio_t * total_t``; see ``mtkd.models.task_weighting``) plus every
    ``feat/<i>`` feature-KD term. A task absent from ``tasks`` trains on its hard loss only.

    Teachers (``mtkd.distill.teachers``): ``teacher_checkpoint=`` is one teacher for every task;
    ``teachers=dict(name=dict(checkpoint=..., config=None))`` several, each task naming its own with
    ``tasks.<t>.teacher`` (and each feature link with ``feature_kd[i].teacher``); with one teacher the names
    may be left out. Every teacher teaches something, runs once per batch, and its heads for the tasks it
    teaches must fit the student's (class count, output signature): errors at build time name both.

    A task whose soft loss is cross-head (``CrossKDLoss``, ``mtkd.distill.crosskd``) gets the student head's
    towers instead of its raw output, with the teacher's head, whose prediction layers it runs them through.

    Partially labelled data: when a batch has no ground truth for a task, its hard loss is 0 and
    ``total = soft`` (the teacher is the only label there, at full weight rather than ``alpha``), so a
    multi-task student learns every task from data labelled for only some of them. A task with
    ``alpha = 0`` is not distilled and contributes 0 on such batches (a zero still attached to its head, so
    that DDP sees every parameter used).

    Teachers are frozen (``requires_grad=False``), always in eval mode, run under ``torch.no_grad()``, and
    never part of ``state_dict()`` (so never saved with the student nor expected when loading).
    """

    def __init__(self, student: Mapping, teacher_checkpoint: str | Path | None = None,
                 tasks: Mapping[str, Mapping] | None = None, teacher: Mapping | None = None,
                 teachers: Mapping[str, Mapping] | None = None, feature_kd: Sequence[Mapping] = (),
                 num_classes: Mapping[str, int] | None = None, head_args: Mapping[str, Mapping] | None = None,
                 task_weighting: Mapping | None = None):
        super().__init__()
        if dict(student).get("task_weighting") is not None:   # it would weigh nothing: the Distiller's does
            raise ValueError("Distiller: set model.task_weighting, not model.student.task_weighting (the Distiller "
                             "weighs its tasks' distillation losses)")
        data_args = {"head_args": dict(head_args)} if head_args else {}   # the student's, from the data
        self.student = MODELS.build(student, num_classes=None if num_classes is None else dict(num_classes),
                                    **data_args)
        specs = parse_teachers(teacher_checkpoint, teacher, teachers)
        self.task_kd, loss_cfgs = resolve_tasks(tasks, self.student.tasks)
        self.task_weighting = build_task_weighting(task_weighting, self.student.tasks,
                                                   ratios={t: kd.ratio for t, kd in self.task_kd.items()})
        self.soft_losses = build_soft_losses(loss_cfgs, self.student)
        for task, kd in self.task_kd.items():   # a task without a soft loss may still name a known teacher
            if kd.teacher is not None and task not in loss_cfgs:
                pick_teacher(f"tasks.{task}", kd.teacher, specs)
        self.task_teacher = {task: pick_teacher(f"tasks.{task}", self.task_kd[task].teacher, specs)
                             for task in self.student.tasks if task in loss_cfgs}
        link_teachers = [pick_teacher(f"feature_kd[{i}]", dict(spec).get("teacher"), specs)
                         for i, spec in enumerate(feature_kd)]
        check_every_teacher_used(specs, self.task_teacher, link_teachers)
        teaches = {name: [t for t, n in self.task_teacher.items() if n == name] for name in specs}
        self.teachers = TeacherSet(specs, teaches, set(link_teachers), self.student)
        self.cross_head_tasks = bind_cross_head_losses(self.soft_losses, self.student, self.teachers, self.task_teacher)
        self.feature_links, feature_losses = build_feature_kd(feature_kd, link_teachers, self.student, self.teachers)
        self.feature_losses = nn.ModuleList(feature_losses)
        self.register_load_state_dict_pre_hook(_keep_teachers_on_load)

    @staticmethod
    def inference_config(cfg: Mapping) -> dict:
        """The config of what is evaluated and saved: the student (the engine's checkpoint ``model_config``),
        with the ``head_args`` the data gave it."""
        student = dict(cfg["student"])
        if cfg.get("head_args"):
            student["head_args"] = dict(cfg["head_args"])
        return student

    @property
    def inference_model(self) -> nn.Module:
        return self.student

    def __getattr__(self, name: str) -> Any:
        """``.teacher``: the teacher when there is exactly one (``.teachers[name]`` in general)."""
        if name != "teacher":
            return super().__getattr__(name)
        teachers = self.__dict__.get("_modules", {}).get("teachers", {})
        if len(teachers) != 1:
            raise AttributeError(f"this Distiller has {len(teachers)} teachers {list(teachers)}; use .teachers[name]")
        return next(iter(teachers.values()))

    @property
    def tasks(self) -> list[str]:
        return list(self.student.tasks)

    @property
    def distilled_tasks(self) -> list[str]:
        """Tasks with a soft loss and ``alpha > 0``: their teacher alone can teach them (no labels needed)."""
        return [t for t in self.student.tasks if t in self.soft_losses and self.task_kd[t].alpha > 0]

    def teacher_fingerprint(self) -> dict[str, dict]:
        """The teacher set, JSON-able: ``{name: {checkpoint, weights_sha256, tasks, feature_kd}}`` (run checkpoints)."""
        return self.teachers.fingerprint()

    def check_teachers(self, saved: Mapping[str, Mapping] | None, where: str = "the checkpoint") -> None:
        """Raise TeacherSetChanged when ``saved`` (a ``teacher_fingerprint()`` from ``where``) differs from this
        Distiller's teachers; None (a checkpoint from before teachers were recorded) passes."""
        changes = [] if saved is None else teacher_set_changes(saved, self.teacher_fingerprint())
        if changes:
            raise TeacherSetChanged(f"cannot resume from {where}: its run had other teachers: " + "; ".join(changes)
                                    + ". Resume with the teachers it was trained with, or start a new run "
                                      "(another --work-dir)")

    # -- the loss -------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Batch (see ``mtkd.structures``) -> ``{"loss", "<task>/hard|soft|total", "<task>/<term>", "feat/<i>"}``."""
        # {teacher: its outputs}, each teacher once under no_grad, first: its maps are freed before the student's
        teacher_out = self.teachers(batch[IMG_KEY])
        student_out = self.student(batch[IMG_KEY], with_feats=len(self.feature_links) > 0,
                                   towers=self.cross_head_tasks)
        hard_terms = self.student.loss(student_out, batch)
        losses: dict[str, Tensor] = dict(hard_terms)
        total = batch[IMG_KEY].new_zeros((), dtype=torch.float32)
        weighted, distilled = {}, self.distilled_tasks   # the tasks with a loss in this batch: task_weighting's
        for task in self.student.tasks:
            task_losses = self._task_losses(task, student_out, teacher_out, hard_terms, batch)
            losses.update(task_losses)
            if task in distilled or has_labels(batch, tuple(self.student.heads[task].batch_keys)):
                weighted[task] = task_losses[f"{task}/total"]
            else:   # neither labels nor a teacher: an exact zero on the head's output (DDP sees it used)
                total = total + task_losses[f"{task}/total"]
        total = total + self.task_weighting(weighted)
        for index, (link, loss_fn) in enumerate(zip(self.feature_links, self.feature_losses)):
            term = link.weight * loss_fn(student_out[FEATS_KEY][link.student_level],
                                         teacher_out[link.teacher][FEATS_KEY][link.teacher_level])
            losses[f"feat/{index}"] = term
            total = total + term
        losses["loss"] = total
        return losses

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The engine's training entry point: the same as ``forward``."""
        return self(batch)

    def _task_losses(self, task: str, student_out: Mapping, teacher_out: Mapping, hard_terms: Mapping,
                     batch: Mapping) -> dict[str, Tensor]:
        """``{task}/hard``, ``{task}/soft`` and ``{task}/total`` for one task (see the class docstring)."""
        alpha = self.task_kd[task].alpha
        keys = tuple(self.student.heads[task].batch_keys)
        labelled = has_labels(batch, keys)
        zero = student_out[task].new_zeros((), dtype=torch.float32)
        hard = sum((v for k, v in hard_terms.items() if k.startswith(f"{task}/")), zero) if labelled else zero
        hard_weight, soft_weight = (1.0 - alpha, alpha) if labelled else (0.0, 1.0 if alpha > 0 else 0.0)
        soft = zero
        if task in self.soft_losses:
            target = _task_target(batch, keys) if labelled else None
            with torch.set_grad_enabled(torch.is_grad_enabled() and soft_weight > 0):
                soft = self._soft_loss(task, student_out, teacher_out[self.task_teacher[task]][task], target)
        # only terms with a non-zero weight: 0 * (a NaN hard loss) must not poison the sum; a task with
        # neither, or a CrossKD task without labels (its soft loss skips the student's predictors), still
        # yields an exact zero attached to its head's output, so DDP sees every parameter used
        unreached = hard_weight == 0 and (soft_weight == 0 or task in self.cross_head_tasks)
        total = student_out[task].float().sum() * 0.0 if unreached else zero
        if hard_weight > 0:
            total = total + hard_weight * hard
        if soft_weight > 0:
            total = total + soft_weight * soft
        return {f"{task}/hard": hard, f"{task}/soft": soft, f"{task}/total": total}

    def _soft_loss(self, task: str, student_out: Mapping, teacher: Tensor, target: Any) -> Tensor:
        """The task's soft loss on the student's raw output, or (CrossKD) on its head's towers, which go
        through the teacher head's prediction layers."""
        loss_fn = self.soft_losses[task]
        student = student_out[task]
        extra: tuple = ()
        if task in self.cross_head_tasks:
            student = student_out[TOWERS_KEY][task]
            extra = (self.teachers[self.task_teacher[task]].heads[task],)
        if getattr(loss_fn, "needs_target", False):
            return loss_fn(student, teacher, *extra, target)
        return loss_fn(student, teacher, *extra)

    # -- teachers are never saved nor loaded with the student (TeacherSet.state_dict is empty) ---------------


def _keep_teachers_on_load(module: Distiller, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook: drop any ``teachers.`` (or older ``teacher.``) keys given and keep the teachers'
    own weights."""
    for key in [k for k in state_dict if k.startswith((f"{prefix}teacher.", f"{prefix}teachers."))]:
        del state_dict[key]
    for name, teacher in module.teachers.items():
        for key, value in teacher.state_dict(keep_vars=False).items():
            state_dict[f"{prefix}teachers.{name}.{key}"] = value


def _task_target(batch: Mapping, keys: tuple[str, ...]) -> Any:
    """The ground truth a target-reading soft loss gets: the tensor for a one-key task, else a dict."""
    return batch[keys[0]] if len(keys) == 1 else {key: batch[key] for key in keys}


# -- building --------------------------------------------------------------------------------------------
def resolve_tasks(tasks: Mapping[str, Mapping],
                  student_tasks: Sequence[str]) -> tuple[dict[str, TaskKD], dict[str, dict]]:
    """``{task: TaskKD}`` for every student task (missing ones: alpha 0, ratio 1) and the soft-loss configs."""
    if not isinstance(tasks, Mapping):
        raise TypeError(f"Distiller: tasks must be a dict {{task: dict(alpha, ratio, loss)}}, got {tasks!r}")
    tasks = {task: cfg for task, cfg in tasks.items() if cfg is not None}  # tasks.<task>=None: not distilled
    unknown = sorted(set(tasks) - set(student_tasks))
    if unknown:
        raise ValueError(f"Distiller: tasks has unknown task(s) {unknown}; the student's tasks are "
                         f"{list(student_tasks)}")
    task_kd, loss_cfgs = {}, {}
    for task in student_tasks:
        cfg = dict(tasks.get(task, {"alpha": 0.0}))
        extra = sorted(set(cfg) - set(TASK_KEYS))
        if extra:
            raise ValueError(f"Distiller: tasks.{task} has unknown key(s) {extra}; known: {list(TASK_KEYS)}")
        alpha, ratio = float(cfg.get("alpha", 0.5)), float(cfg.get("ratio", 1.0))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Distiller: tasks.{task}.alpha must be in [0, 1], got {alpha}")
        if not (math.isfinite(ratio) and ratio >= 0):
            raise ValueError(f"Distiller: tasks.{task}.ratio must be a finite number >= 0, got {ratio}")
        if "loss" in cfg:
            loss_cfgs[task] = dict(cfg["loss"])
        elif alpha > 0:
            raise ValueError(f"Distiller: tasks.{task} has alpha={alpha} but no soft loss; add e.g. "
                             f"loss=dict(type='LogitKDLoss', temperature=2.0)")
        task_kd[task] = TaskKD(alpha=alpha, ratio=ratio, teacher=cfg.get("teacher"))
    return task_kd, loss_cfgs


def build_soft_losses(loss_cfgs: Mapping[str, Mapping], student: nn.Module) -> nn.ModuleDict:
    """Each task's soft loss, shown its student head's ``output_signature()`` (``for_output``): a loss that
    does not fit the output is an error naming the task, or hands over to one that does (LogitKDLoss on a
    multi-label head becomes MultiLabelKDLoss)."""
    losses = {}
    for task, cfg in loss_cfgs.items():
        loss = MODELS.build(cfg)
        adapt = getattr(loss, "for_output", None)
        try:
            losses[task] = adapt(student.heads[task].output_signature()) if adapt is not None else loss
        except ValueError as err:
            raise ValueError(f"Distiller: tasks.{task}.loss={cfg.get('type')!r} does not fit the student's "
                             f"{task} head: {err}") from err
    return nn.ModuleDict(losses)


def bind_cross_head_losses(soft_losses: Mapping[str, nn.Module], student: nn.Module, teachers: Mapping,
                           task_teacher: Mapping[str, str]) -> list[str]:
    """Bind each cross-head soft loss (CrossKD) to the student's and its teacher's heads; its tasks."""
    tasks = []
    for task, loss in soft_losses.items():
        if getattr(loss, "cross_head", False):
            name = task_teacher[task]
            loss.bind(student.heads[task], teachers[name].heads[task], f"Distiller: tasks.{task} (teacher {name!r})")
            tasks.append(task)
    return tasks


def build_feature_kd(specs: Sequence[Mapping], link_teachers: Sequence[str], student: nn.Module,
                     teachers: Mapping[str, nn.Module]) -> tuple[list[FeatureLink], list[nn.Module]]:
    """Feature-KD links and their losses, built with the student's and each link's teacher's neck channels."""
    links, losses = [], []
    s_channels = list(student.neck.out_channels)
    for index, (spec, name) in enumerate(zip(specs, link_teachers)):
        spec, t_channels = dict(spec), list(teachers[name].neck.out_channels)
        where = f"Distiller: feature_kd[{index}]"
        extra = sorted(set(spec) - set(FEATURE_KD_KEYS))
        missing = [k for k in ("student_level", "teacher_level", "loss") if k not in spec]
        if extra or missing:
            raise ValueError(f"{where} has unknown key(s) {extra} / lacks {missing}; expected keys "
                             f"{list(FEATURE_KD_KEYS)} (weight optional; teacher optional with one teacher)")
        s_level, t_level = int(spec["student_level"]), int(spec["teacher_level"])
        if not (0 <= s_level < len(s_channels) and 0 <= t_level < len(t_channels)):
            raise ValueError(f"{where}: student_level={s_level} / teacher_level={t_level} out of range; the "
                             f"student's neck has {len(s_channels)} levels, teacher {name!r}'s {len(t_channels)}")
        losses.append(MODELS.build(spec["loss"], student_channels=s_channels[s_level],
                                   teacher_channels=t_channels[t_level]))
        links.append(FeatureLink(s_level, t_level, float(spec.get("weight", 1.0)), name))
    return links, losses
