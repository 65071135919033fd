"""The multi-task model: backbone -> neck -> one head per task, returning a dict of raw outputs."""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mtkd.models.task_weighting import build_task_weighting
from mtkd.registry import MODELS
from mtkd.structures import FEATS_KEY, IMG_KEY, TOWERS_KEY


def resolve_num_classes(task: str, head_cfg: Mapping, num_classes: Mapping[str, int] | None) -> dict:
    """The head config with ``num_classes`` filled from the data; a disagreement names both numbers."""
    cfg = dict(head_cfg)
    from_data = (num_classes or {}).get(task)
    if cfg.get("num_classes") is None:
        if from_data is None:
            raise ValueError(f"head {task!r}: num_classes is not set and the data does not give it "
                             f"(data classes: {dict(num_classes or {})}); set heads.{task}.num_classes")
        cfg["num_classes"] = int(from_data)
    elif from_data is not None and int(cfg["num_classes"]) != int(from_data):
        raise ValueError(f"head {task!r}: the config sets num_classes={cfg['num_classes']} but the data has "
                         f"{from_data} {task} classes; remove heads.{task}.num_classes to take it from the data")
    return cfg


def resolve_head_args(task: str, head_cfg: Mapping, head_args: Mapping[str, Mapping] | None) -> dict:
    """The head config with the data's other head arguments (``head_args[task]``, e.g. ``multi_label``)
    filled in; a config value that disagrees, or a head without such an argument, is an error naming both."""
    cfg = dict(head_cfg)
    for key, value in dict((head_args or {}).get(task) or {}).items():
        if not _takes(cfg, key):
            raise ValueError(f"head {task!r} ({cfg.get('type')}): the data gives it {key}={value!r}, but it has "
                             f"no {key!r} argument")
        if cfg.get(key) is None:
            cfg[key] = value
        elif cfg[key] != value:
            raise ValueError(f"head {task!r}: the config sets {key}={cfg[key]!r} but the data gives {key}={value!r}; "
                             f"remove heads.{task}.{key} to take it from the data")
    return cfg


def _takes(head_cfg: Mapping, name: str) -> bool:
    """Whether the head class has an argument ``name`` (a regression head, e.g. depth, has no ``num_classes``)."""
    head_type = head_cfg.get("type") if isinstance(head_cfg, Mapping) else None
    if isinstance(head_type, str):
        head_type = MODELS.get(head_type) if head_type in MODELS else None
    try:
        return name in inspect.signature(head_type).parameters
    except (TypeError, ValueError):  # no class to read: MODELS.build reports the bad cfg or type
        return True


def _head_cfg(task: str, cfg: Mapping, num_classes: Mapping | None, head_args: Mapping | None) -> dict:
    """A head's config with everything the data decides: ``num_classes`` (when it takes one) and ``head_args``."""
    cfg = resolve_num_classes(task, cfg, num_classes) if _takes(cfg, "num_classes") else dict(cfg)
    return resolve_head_args(task, cfg, head_args)


@MODELS.register_module()
class MultiTaskModel(nn.Module):
    """``forward(img [B, 3, H, W]) -> {task: raw}`` for any set of task heads over a shared backbone + neck.

    Heads are built with the neck's ``in_channels``/``in_strides``, ``num_classes`` from the data
    (``num_classes={task: int}``) and whatever else the data decides about them (``head_args={task:
    {arg: value}}``, e.g. ``multi_label=True`` for multi-hot image labels; the engine records it in the
    model config, so a checkpoint rebuilds the same heads). A head whose config is None is left out (so a
    child config can drop an inherited head: ``heads=dict(depth=None)``). The model never branches on a
    task's name: a new task is a new head. ``task_weighting`` (``dict(type=...)``, see
    ``mtkd.models.task_weighting``; default ``FixedWeighting``, every task weight 1) turns the per-task
    losses into the training loss.
    """

    def __init__(self, backbone: Mapping, neck: Mapping | None = None, heads: Mapping[str, Mapping] | None = None,
                 num_classes: Mapping[str, int] | None = None, head_args: Mapping[str, Mapping] | None = None,
                 task_weighting: Mapping | None = None):
        super().__init__()
        heads = {task: cfg for task, cfg in (heads or {}).items() if cfg is not None}  # heads.<task>=None drops it
        if not heads:
            raise ValueError("MultiTaskModel needs at least one head, e.g. heads=dict(cls=dict(type='ClsHead'))")
        for key in (FEATS_KEY, TOWERS_KEY):
            if key in heads:
                raise ValueError(f"MultiTaskModel: {key!r} cannot name a task: forward returns the neck's maps or "
                                 f"the heads' towers under that key (tasks: {list(heads)})")
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(dict(neck or dict(type="IdentityNeck")),
                                 in_channels=self.backbone.out_channels, in_strides=self.backbone.strides)
        self.heads = nn.ModuleDict({
            task: MODELS.build(_head_cfg(task, cfg, num_classes, head_args), in_channels=self.neck.out_channels,
                               in_strides=self.neck.strides)
            for task, cfg in heads.items()})
        self.tasks: tuple[str, ...] = tuple(self.heads)
        self.num_classes = {task: int(head.num_classes) for task, head in self.heads.items()
                            if getattr(head, "num_classes", None) is not None}
        for task, head in self.heads.items():
            check_head(task, head)
        self.task_weighting = build_task_weighting(task_weighting, self.tasks)
        self._check_raw_outputs()

    def _check_raw_outputs(self) -> None:
        """Run the model once on the meta device (shapes only, nothing computed): every head must return
        one tensor. A model with an op that has no meta kernel is checked at its first real forward."""
        size = max(32, 4 * max(self.neck.strides))
        state = {name: torch.empty_like(value, device="meta")
                 for name, value in [*self.named_parameters(), *self.named_buffers()]}
        try:
            with torch.no_grad():
                outputs = torch.func.functional_call(self, state, (torch.empty(2, 3, size, size, device="meta"),))
        except (NotImplementedError, RuntimeError):
            self._outputs_checked = False
            return
        self._check_outputs(outputs)

    def _check_outputs(self, outputs: Mapping[str, Any]) -> None:
        for task, head in self.heads.items():
            if not isinstance(outputs[task], torch.Tensor):
                raise TypeError(f"head {task!r} ({type(head).__name__}): forward must return one tensor, its raw "
                                f"output (what soft losses compare), got {type(outputs[task]).__name__}")
        self._outputs_checked = True

    @property
    def inference_model(self) -> "MultiTaskModel":
        """What is evaluated and saved (a Distiller returns its student)."""
        return self

    def forward(self, img: torch.Tensor, with_feats: bool = False, towers: Sequence[str] = ()) -> dict[str, Any]:
        """``img [B, 3, H, W]`` -> ``{task: raw}`` (see mtkd.structures), plus ``feats`` (neck maps) if asked,
        and ``towers``: ``{task: head.forward_tower(feats)}`` for the tasks named (heads that declare the split,
        heads/base.py), whose raw output is then computed from those towers."""
        feats = self.neck(self.backbone(img))
        outputs: dict[str, Any] = {}
        tower_maps: dict[str, Any] = {}
        for task, head in self.heads.items():
            if task in towers:
                tower_maps[task] = head.forward_tower(feats)
                outputs[task] = head.forward_pred(tower_maps[task])
            else:
                outputs[task] = head(feats)
        if towers:
            outputs[TOWERS_KEY] = tower_maps
        if not getattr(self, "_outputs_checked", True):
            self._check_outputs(outputs)
        if with_feats:
            outputs[FEATS_KEY] = feats
        return outputs

    def has_labels(self, task: str, batch: Mapping[str, Any]) -> bool:
        """Whether ``batch`` holds every ground-truth key (``head.batch_keys``) of ``task``; a batch with only
        some of them is an error (a collate or dataset bug), never a silently skipped task."""
        keys = self.heads[task].batch_keys
        present = [key for key in keys if key in batch]
        if present and len(present) != len(keys):
            raise ValueError(f"task {task!r}: the batch has {present} but not "
                             f"{[key for key in keys if key not in batch]} (its head reads {list(keys)})")
        return len(present) == len(keys)

    def loss(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{"seg/ce": ..., "det/box": ...}``: every head's hard losses; tasks without labels are skipped."""
        losses = {}
        for task, head in self.heads.items():
            if self.has_labels(task, batch):
                losses.update({f"{task}/{name}": value for name, value in head.loss(outputs[task], batch).items()})
        return losses

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The engine's training call: the loss terms plus ``loss``, the task weighting of the tasks' losses.

        Terms come already weighted by each head's ``loss_weights`` (defaults: SegHead ``ce=1``, DetHead
        ``box=2, obj=1, cls=1``, ClsHead ``ce=1``); a task's loss is the sum of its terms.
        """
        outputs = self(batch[IMG_KEY])
        losses = self.loss(outputs, batch)
        if not losses:
            raise ValueError(f"the batch has labels for none of the model's tasks {self.tasks} "
                             f"(batch keys: {sorted(batch)})")
        task_losses = {task: torch.stack([v for k, v in losses.items() if k.startswith(f"{task}/")]).sum()
                       for task in self.tasks if self.has_labels(task, batch)}
        total = self.task_weighting(task_losses)
        for task in self.tasks:  # unlabelled heads stay in the graph with a zero term: DDP needs every grad
            if not self.has_labels(task, batch):
                total = total + outputs[task].sum() * 0.0
        losses["loss"] = total
        return losses

    def predict(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Any]:
        """``{task: head.predict(...)}``: decoded results in input-image pixels."""
        return {task: head.predict(outputs[task], batch) for task, head in self.heads.items()}


HEAD_MEMBERS = ("forward", "loss", "predict", "output_signature", "batch_keys")


def check_head(task: str, head: nn.Module) -> None:
    """The head contract of ``mtkd.structures``: a TypeError naming the head and what it lacks."""
    missing = [name for name in HEAD_MEMBERS if not hasattr(head, name)]
    keys = getattr(head, "batch_keys", None)
    if not missing and not (isinstance(keys, (tuple, list)) and keys and all(isinstance(k, str) for k in keys)):
        missing.append(f"batch_keys as a non-empty tuple of str (got {keys!r})")
    if missing:
        raise TypeError(f"head {task!r} ({type(head).__name__}) does not follow the head contract "
                        f"(mtkd.structures): it lacks {missing}")


def check_distillable(teacher: MultiTaskModel, student: MultiTaskModel) -> None:
    """Raise ValueError listing every difference that makes output-level distillation meaningless.

    Every student task needs a teacher head whose ``output_signature()`` (class count, det strides and box
    encoding, ...) equals the student's; teacher tasks the student lacks are allowed (they go unused).
    """
    for role, model in (("teacher", teacher), ("student", student)):
        if not (hasattr(model, "tasks") and hasattr(model, "heads")):
            raise TypeError(f"check_distillable: the {role} must be a MultiTaskModel (with tasks and heads), "
                            f"got {type(model).__name__}")
    problems = []
    missing = [t for t in student.tasks if t not in teacher.tasks]
    if missing:
        problems.append(f"the teacher has no head for the student's tasks {missing} (teacher: {list(teacher.tasks)})")
    for task in student.tasks:
        if task in missing:
            continue
        t_sig, s_sig = teacher.heads[task].output_signature(), student.heads[task].output_signature()
        for key in sorted(set(t_sig) | set(s_sig)):
            if t_sig.get(key) != s_sig.get(key):
                problems.append(f"{task}: {key} differs: teacher {t_sig.get(key)!r}, student {s_sig.get(key)!r}")
    if problems:
        raise ValueError("teacher and student cannot be distilled at output level:\n  " + "\n  ".join(problems))
