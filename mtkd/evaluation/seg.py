"""Semantic segmentation metric: mIoU and pixel accuracy from a confusion matrix kept on the device."""
from __future__ import annotations

import torch

from mtkd.dist import all_reduce
from mtkd.registry import METRICS
from mtkd.structures import IGNORE_INDEX


def resolve_num_classes(metric: str, task: str, dataset, num_classes: int | None) -> int:
    """``num_classes`` when given, else ``dataset.num_classes[task]``; a clear error when neither exists."""
    if num_classes is None:
        counts = getattr(dataset, "num_classes", None)
        if not counts or task not in counts:
            raise ValueError(f"{metric}(task={task!r}): pass num_classes=..., or a dataset whose num_classes "
                             f"has a {task!r} entry (dataset={type(dataset).__name__}, num_classes={counts!r})")
        num_classes = counts[task]
    if int(num_classes) < 1:
        raise ValueError(f"{metric}(task={task!r}): num_classes must be >= 1, got {num_classes!r}")
    return int(num_classes)


@METRICS.register_module()
class SegMetric:
    """``seg/mIoU`` and ``seg/aAcc`` in percent, from a ``[C, C]`` confusion matrix (rows: label, cols: pred).

    mIoU is the mean IoU over the classes that appear in the labels or the predictions of the whole
    evaluation (union > 0), the same as mmseg's nanmean; classes absent from both are left out, and
    ignore pixels count nowhere. Under DDP ``compute()`` sums the confusion matrices of all ranks, so the
    engine must pass only real samples (no DistributedSampler padding) or padded images count twice.
    """

    primary = "seg/mIoU"

    def __init__(self, task: str = "seg", dataset=None, num_classes: int | None = None,
                 ignore_index: int = IGNORE_INDEX):
        self.task = task
        self.num_classes = resolve_num_classes("SegMetric", task, dataset, num_classes)
        names = (getattr(dataset, "class_names", None) or {}).get(task)
        if names is not None and len(names) != self.num_classes:
            raise ValueError(f"SegMetric(task={task!r}): dataset.class_names[{task!r}] has {len(names)} names "
                             f"but there are {self.num_classes} classes")
        self.class_names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        self.ignore_index = ignore_index
        self.primary = f"{task}/mIoU"
        self.reset()

    def reset(self) -> None:
        self.confusion: torch.Tensor | None = None   # this rank's [C, C] counts, on the preds' device
        self._global: torch.Tensor | None = None     # all ranks' counts, from the last compute()

    def update(self, preds, batch: dict) -> None:
        """preds: list of B long ``[H, W]`` (or one ``[B, H, W]``); labels ``batch[task]`` long ``[B, H, W]``."""
        if isinstance(preds, (list, tuple)):
            if not preds:
                return
            preds = torch.stack(list(preds))
        if self.task not in batch:
            raise KeyError(f"SegMetric: the batch has no {self.task!r} labels (keys: {sorted(batch)})")
        target = batch[self.task].to(preds.device)
        if preds.shape != target.shape:
            raise ValueError(f"SegMetric: predictions {tuple(preds.shape)} and labels {tuple(target.shape)} "
                             "differ; predict at the batch's input size")
        keep = target != self.ignore_index
        target, pred = target[keep].long(), preds[keep].long()
        self._check_range(target, pred)
        n = self.num_classes
        counts = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)
        self.confusion = counts if self.confusion is None else self.confusion + counts
        self._global = None

    def _check_range(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        n = self.num_classes
        if not ((target < 0) | (target >= n) | (pred < 0) | (pred >= n)).any():
            return
        for what, values in (("label", target), ("prediction", pred)):
            bad = values[(values < 0) | (values >= n)]
            if bad.numel():
                raise ValueError(f"SegMetric(task={self.task!r}): {what} value {int(bad[0])} is outside "
                                 f"0..{n - 1} (and is not ignore_index={self.ignore_index})")

    def _gathered(self) -> torch.Tensor:
        """The confusion matrix summed over ranks (collective under DDP), float64 ``[C, C]``."""
        if self._global is None:
            local = self.confusion if self.confusion is not None else torch.zeros(
                self.num_classes, self.num_classes, dtype=torch.long)
            self._global = all_reduce(local, "sum").double()
        return self._global

    def _iou(self) -> torch.Tensor:
        """Per-class IoU in ``[0, 1]``, NaN for classes absent from labels and predictions, ``[C]``."""
        conf = self._gathered()
        inter = conf.diag()
        union = conf.sum(0) + conf.sum(1) - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))

    def compute(self) -> dict[str, float]:
        """Global mIoU and pixel accuracy in percent (0 when no labelled pixel was seen)."""
        conf = self._gathered()
        iou = self._iou()
        valid = ~iou.isnan()
        miou = float(iou[valid].mean()) * 100 if valid.any() else 0.0
        total = conf.sum()
        acc = float(conf.diag().sum() / total) * 100 if total > 0 else 0.0
        return {f"{self.task}/mIoU": miou, f"{self.task}/aAcc": acc}

    def per_class(self) -> dict[str, float]:
        """IoU per class name in percent, NaN for a class absent from labels and predictions."""
        return {name: float(v) * 100 for name, v in zip(self.class_names, self._iou())}

    def summary(self) -> str:
        """A per-class IoU table; uses the last ``compute()`` (collective under DDP when none was made)."""
        lines = [f"{self.task} IoU per class (%):"]
        lines += [f"  {name:<20} {value:6.2f}" for name, value in self.per_class().items()]
        return "\n".join(lines)
