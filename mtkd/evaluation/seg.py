"""Semantic segmentation metric: mIoU and pixel accuracy from a confusion matrix kept on the device."""
from __future__ import annotations

import torch

from mtkd.engine.dist import all_reduce_sum
from mtkd.registry import METRICS
from mtkd.structures import IGNORE_INDEX


@METRICS.register_module()
class SegMetric:
    """``seg/mIoU`` and ``seg/aAcc`` in percent.

    mIoU averages the IoU of the classes whose union (ground truth or prediction) is non-empty over the
    whole evaluation, as mmseg does with nanmean; ignore pixels count nowhere. Under DDP the confusion
    matrix is summed over ranks, so every image counts once (the engine shards without padding).
    """

    primary = "seg/mIoU"

    def __init__(self, task: str = "seg", dataset=None, num_classes: int | None = None,
                 ignore_index: int = IGNORE_INDEX):
        self.task = task
        self.num_classes = int(num_classes or dataset.num_classes[task])
        names = (getattr(dataset, "class_names", None) or {}).get(task)
        self.class_names = list(names) if names else [str(i) for i in range(self.num_classes)]
        self.ignore_index = ignore_index
        self.primary = f"{task}/mIoU"
        self.reset()

    def reset(self) -> None:
        self.confusion: torch.Tensor | None = None

    def update(self, preds, batch: dict) -> None:
        """preds: list of B long ``[H, W]`` (or ``[B, H, W]``); targets ``batch[task]`` long ``[B, H, W]``."""
        pred = torch.stack(list(preds)) if isinstance(preds, (list, tuple)) else preds
        target = batch[self.task].to(pred.device)
        if pred.shape != target.shape:
            raise ValueError(f"SegMetric: predictions {tuple(pred.shape)} and labels {tuple(target.shape)} differ")
        keep = target != self.ignore_index
        n = self.num_classes
        index = target[keep].long() * n + pred[keep].long().clamp(0, n - 1)
        counts = torch.bincount(index, minlength=n * n).reshape(n, n)
        self.confusion = counts if self.confusion is None else self.confusion + counts.to(self.confusion.device)

    def _gathered(self) -> torch.Tensor:
        confusion = self.confusion if self.confusion is not None else torch.zeros(
            self.num_classes, self.num_classes, dtype=torch.long)
        return all_reduce_sum(confusion.clone()).double()

    def per_class(self) -> dict[str, float]:
        """IoU per class name in percent (NaN for a class absent from labels and predictions)."""
        conf = self._gathered()
        inter, union = conf.diag(), conf.sum(0) + conf.sum(1) - conf.diag()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))
        return {name: float(v) * 100 for name, v in zip(self.class_names, iou)}

    def compute(self) -> dict[str, float]:
        conf = self._gathered()
        total = conf.sum()
        iou = torch.tensor(list(self.per_class().values()), dtype=torch.float64)
        valid = ~torch.isnan(iou)
        miou = float(iou[valid].mean()) if valid.any() else 0.0
        acc = float(conf.diag().sum() / total * 100) if total > 0 else 0.0
        return {f"{self.task}/mIoU": miou, f"{self.task}/aAcc": acc}

    def summary(self) -> str:
        lines = [f"{self.task} IoU per class:"]
        lines += [f"  {name:<16} {value:6.2f}" for name, value in self.per_class().items()]
        return "\n".join(lines)
