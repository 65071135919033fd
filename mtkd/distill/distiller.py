"""The multi-task Distiller: a student trained on ground truth and on a frozen teacher, task by task."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtkd.checkpoint import CheckpointError, load_checkpoint
from mtkd.config import import_custom_modules
from mtkd.models.multitask import check_distillable
from mtkd.registry import MODELS
from mtkd.structures import FEATS_KEY, IMG_KEY, has_labels

TASK_KEYS = ("alpha", "ratio", "loss")
FEATURE_KD_KEYS = ("student_level", "teacher_level", "loss", "weight")
TRAIN_TEACHER_HINT = ("train the teacher first, e.g. `python tools/train.py configs/teacher.py` (or "
                      "`python tools/train.py configs/demo/teacher.py` for the CPU demo), then pass its best.pth: "
                      "`--cfg-options model.teacher_checkpoint=work_dirs/<teacher config name>/best.pth`")


@dataclass(frozen=True)
class TaskKD:
    """How one task is distilled: ``L_t = (1 - alpha) * H_t + alpha * S_t``, weighted by ``ratio``."""

    alpha: float
    ratio: float


@dataclass(frozen=True)
class FeatureLink:
    """One feature-KD pair: student neck level -> teacher neck level, with its weight."""

    student_level: int
    teacher_level: int
    weight: float


@MODELS.register_module()
class Distiller(nn.Module):
    """Student ``MultiTaskModel`` + frozen teacher; ``forward(batch)`` returns the loss dict to minimise.

    Per task t: ``t/hard`` (the student's ground-truth loss), ``t/soft`` (its soft loss against the
    teacher), ``t/total = (1 - alpha_t) * hard + alpha_t * soft``; ``loss = sum_t ratio_t * total_t`` plus
    every ``feat/<i>`` feature-KD term. A task absent from ``tasks`` trains on its hard loss only.

    Partially labelled data: when a batch has no ground truth for a task, its hard loss is 0 and
    ``total = soft`` (the teacher is the only label there, at full weight rather than ``alpha``), so a
    multi-task student learns every task from data labelled for only some of them. A task with
    ``alpha = 0`` is not distilled and contributes 0 on such batches (a zero still attached to its head, so
    that DDP sees every parameter used).

    The teacher is frozen (``requires_grad=False``), always in eval mode, run under ``torch.no_grad()``,
    and never part of ``state_dict()`` (so never saved with the student nor expected when loading).
    """

    def __init__(self, student: Mapping, teacher_checkpoint: str | Path, tasks: Mapping[str, Mapping],
                 teacher: Mapping | None = None, feature_kd: Sequence[Mapping] = (),
                 num_classes: Mapping[str, int] | None = None, head_args: Mapping[str, Mapping] | None = None):
        super().__init__()
        data_args = {"head_args": dict(head_args)} if head_args else {}   # the student's, from the data
        self.student = MODELS.build(student, num_classes=None if num_classes is None else dict(num_classes),
                                    **data_args)
        self.teacher_checkpoint = str(teacher_checkpoint)
        self.teacher = build_teacher(teacher, self.teacher_checkpoint)
        check_teacher_fits(self.teacher, self.student, self.teacher_checkpoint)
        self.task_kd, loss_cfgs = resolve_tasks(tasks, self.student.tasks)
        self.soft_losses = build_soft_losses(loss_cfgs, self.student)
        self.feature_links, feature_losses = build_feature_kd(feature_kd, self.student, self.teacher)
        self.feature_losses = nn.ModuleList(feature_losses)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.register_load_state_dict_pre_hook(_keep_teacher_on_load)

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

    @property
    def tasks(self) -> list[str]:
        return list(self.student.tasks)

    @property
    def distilled_tasks(self) -> list[str]:
        """Tasks with a soft loss and ``alpha > 0``: the teacher alone can teach them (no labels needed)."""
        return [t for t in self.student.tasks if t in self.soft_losses and self.task_kd[t].alpha > 0]

    def train(self, mode: bool = True) -> "Distiller":
        """Set the student (and adapters) to ``mode``; the teacher stays in eval mode (BN stats frozen)."""
        super().train(mode)
        self.teacher.eval()
        return self

    # -- the loss -------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Batch (see ``mtkd.structures``) -> ``{"loss", "<task>/hard|soft|total", "<task>/<term>", "feat/<i>"}``."""
        with_feats = len(self.feature_links) > 0
        with torch.no_grad():  # teacher first: its intermediate maps are freed before the student's are made
            teacher_out = self.teacher(batch[IMG_KEY], with_feats=with_feats)
        student_out = self.student(batch[IMG_KEY], with_feats=with_feats)
        hard_terms = self.student.loss(student_out, batch)
        losses: dict[str, Tensor] = dict(hard_terms)
        total = batch[IMG_KEY].new_zeros((), dtype=torch.float32)
        for task in self.student.tasks:
            task_losses = self._task_losses(task, student_out, teacher_out, hard_terms, batch)
            losses.update(task_losses)
            total = total + self.task_kd[task].ratio * task_losses[f"{task}/total"]
        for index, (link, loss_fn) in enumerate(zip(self.feature_links, self.feature_losses)):
            term = link.weight * loss_fn(student_out[FEATS_KEY][link.student_level],
                                         teacher_out[FEATS_KEY][link.teacher_level])
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
                soft = self._soft_loss(task, student_out[task], teacher_out[task], target)
        # only terms with a non-zero weight: 0 * (a NaN hard loss) must not poison the sum; a task with
        # neither still yields an exact zero attached to its head's output, so DDP sees every parameter used
        total = student_out[task].float().sum() * 0.0 if hard_weight == 0 and soft_weight == 0 else zero
        if hard_weight > 0:
            total = total + hard_weight * hard
        if soft_weight > 0:
            total = total + soft_weight * soft
        return {f"{task}/hard": hard, f"{task}/soft": soft, f"{task}/total": total}

    def _soft_loss(self, task: str, student: Tensor, teacher: Tensor, target: Any) -> Tensor:
        loss_fn = self.soft_losses[task]
        if getattr(loss_fn, "needs_target", False):
            return loss_fn(student, teacher, target)
        return loss_fn(student, teacher)

    # -- the teacher is never saved nor loaded with the student ---------------------------------------
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> dict:
        """The student's and adapters' state; every ``teacher.`` key is left out (mmrazor#157)."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(f"{prefix}teacher.")]:
            del state[key]
        return state


def _keep_teacher_on_load(module: Distiller, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook: drop any ``teacher.`` keys given and keep the teacher's own weights."""
    teacher_prefix = f"{prefix}teacher."
    for key in [k for k in state_dict if k.startswith(teacher_prefix)]:
        del state_dict[key]
    for key, value in module.teacher.state_dict(keep_vars=False).items():
        state_dict[teacher_prefix + key] = value


def _task_target(batch: Mapping, keys: tuple[str, ...]) -> Any:
    """The ground truth a target-reading soft loss gets: the tensor for a one-key task, else a dict."""
    return batch[keys[0]] if len(keys) == 1 else {key: batch[key] for key in keys}


# -- building --------------------------------------------------------------------------------------------
def build_teacher(teacher_cfg: Mapping | None, path: str) -> nn.Module:
    """Build the teacher (``teacher_cfg`` or the checkpoint's ``model_config``) and load its weights, strict."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"cannot load the teacher checkpoint model.teacher_checkpoint={path!r}: {err}. "
                              f"To get one, {TRAIN_TEACHER_HINT}") from err
    cfg = dict(ckpt["model_config"] if teacher_cfg is None else teacher_cfg)
    if ckpt["model_config"].get("head_args") and "head_args" not in cfg:   # what its data decided (multi_label)
        cfg["head_args"] = ckpt["model_config"]["head_args"]
    import_custom_modules(ckpt["config"], f"the config stored in the teacher checkpoint {path}")
    model = MODELS.build(cfg, num_classes=dict(ckpt["num_classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights in the teacher checkpoint {path} do not fit the teacher model "
            f"({'model.teacher' if teacher_cfg is not None else 'its own model_config'}): "
            f"{_first_lines(str(err), 12)}\nPass the teacher config it was trained with, or {TRAIN_TEACHER_HINT}"
        ) from err
    return model


def _first_lines(text: str, count: int) -> str:
    lines = text.strip().splitlines()
    more = f"\n\t... ({len(lines) - count} more lines)" if len(lines) > count else ""
    return "\n".join(lines[:count]) + more


def check_teacher_fits(teacher: nn.Module, student: nn.Module, path: str) -> None:
    """Class counts per task first (naming both numbers), then the models' output check (det grid, ...)."""
    for task in (t for t in student.tasks if t in teacher.tasks):  # missing tasks: check_distillable
        n_teacher = getattr(teacher.heads[task], "num_classes", None)
        n_student = getattr(student.heads[task], "num_classes", None)
        if n_teacher != n_student:
            raise ValueError(f"the teacher in {path} predicts {n_teacher} {task} classes but the student has "
                             f"{n_student} (from its training data); distil a teacher trained on the same "
                             f"classes")
    try:
        check_distillable(teacher, student)
    except ValueError as err:
        raise ValueError(f"the teacher in {path} cannot teach this student: {err}") from err


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
        task_kd[task] = TaskKD(alpha=alpha, ratio=ratio)
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


def build_feature_kd(specs: Sequence[Mapping], student: nn.Module,
                     teacher: nn.Module) -> tuple[list[FeatureLink], list[nn.Module]]:
    """Feature-KD links and their losses, built with the student's and teacher's neck channel counts."""
    links, losses = [], []
    s_channels, t_channels = list(student.neck.out_channels), list(teacher.neck.out_channels)
    for index, spec in enumerate(specs):
        spec = dict(spec)
        where = f"Distiller: feature_kd[{index}]"
        extra = sorted(set(spec) - set(FEATURE_KD_KEYS))
        missing = [k for k in ("student_level", "teacher_level", "loss") if k not in spec]
        if extra or missing:
            raise ValueError(f"{where} has unknown key(s) {extra} / lacks {missing}; expected keys "
                             f"{list(FEATURE_KD_KEYS)} (weight optional)")
        s_level, t_level = int(spec["student_level"]), int(spec["teacher_level"])
        if not (0 <= s_level < len(s_channels) and 0 <= t_level < len(t_channels)):
            raise ValueError(f"{where}: student_level={s_level} / teacher_level={t_level} out of range; the "
                             f"student's neck has {len(s_channels)} levels, the teacher's {len(t_channels)}")
        losses.append(MODELS.build(spec["loss"], student_channels=s_channels[s_level],
                                   teacher_channels=t_channels[t_level]))
        links.append(FeatureLink(s_level, t_level, float(spec.get("weight", 1.0))))
    return links, losses
