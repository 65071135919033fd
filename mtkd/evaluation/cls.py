"""Classification metric: top-1 and top-5 accuracy from hit counts kept on the device."""
from __future__ import annotations

import torch

from mtkd.dist import all_reduce
from mtkd.registry import METRICS


@METRICS.register_module()
class ClsMetric:
    """``cls/top1`` and, when there are at least 5 classes, ``cls/top5``, in percent.

    The number of classes comes from ``num_classes``, else ``dataset.num_classes[task]``, else the width
    of the first predictions. Under DDP ``compute()`` sums the hit counts of all ranks, so the engine must
    pass only real samples (no DistributedSampler padding) or padded images count twice.
    """

    primary = "cls/top1"

    def __init__(self, task: str = "cls", dataset=None, topk: tuple[int, ...] = (1, 5),
                 num_classes: int | None = None):
        self.task = task
        self.topk = tuple(sorted({int(k) for k in topk}))
        if 1 not in self.topk or self.topk[0] < 1:
            raise ValueError(f"ClsMetric(task={task!r}): topk must hold 1 (the primary metric) and only "
                             f"positive values, got {topk!r}")
        counts = getattr(dataset, "num_classes", None) or {}
        self.num_classes = int(num_classes) if num_classes is not None else (
            int(counts[task]) if task in counts else None)
        self.primary = f"{task}/top1"
        self.reset()

    def reset(self) -> None:
        self.counts: torch.Tensor | None = None   # [len(topk) + 1]: hits per k, then images; preds' device
        self._last: tuple[dict[str, float], int] | None = None

    def update(self, preds: torch.Tensor, batch: dict) -> None:
        """preds: ``[B, C]`` probabilities (or logits); labels ``batch[task]`` long ``[B]``."""
        if self.task not in batch:
            raise KeyError(f"ClsMetric: the batch has no {self.task!r} labels (keys: {sorted(batch)})")
        target = batch[self.task].to(preds.device)
        if preds.ndim != 2 or target.shape != preds.shape[:1]:
            raise ValueError(f"ClsMetric(task={self.task!r}): expected predictions [B, C] and labels [B], got "
                             f"{tuple(preds.shape)} and {tuple(target.shape)}")
        width = preds.shape[1]
        if self.num_classes is None:
            self.num_classes = width
        if width != self.num_classes:
            raise ValueError(f"ClsMetric(task={self.task!r}): predictions have {width} classes, expected "
                             f"{self.num_classes}")
        bad = target[(target < 0) | (target >= width)]
        if bad.numel():
            raise ValueError(f"ClsMetric(task={self.task!r}): label {int(bad[0])} is outside 0..{width - 1}")
        ranked = preds.topk(min(max(self.topk), width), dim=1).indices   # [B, k]
        hits = ranked == target[:, None]
        images = torch.tensor(len(target), device=preds.device)
        counts = torch.stack([hits[:, :k].any(1).sum() for k in self.topk] + [images])
        self.counts = counts if self.counts is None else self.counts + counts
        self._last = None

    def compute(self) -> dict[str, float]:
        """Accuracy over all ranks' images, in percent; top-k only for k <= the number of classes."""
        local = self.counts if self.counts is not None else torch.zeros(len(self.topk) + 1, dtype=torch.long)
        total = all_reduce(local, "sum").cpu()
        classes = int(all_reduce(torch.tensor([self.num_classes or 0]), "max"))
        images = int(total[-1])
        results = {f"{self.task}/top{k}": (float(hits) / images * 100 if images else 0.0)
                   for k, hits in zip(self.topk, total[:-1].tolist()) if k <= max(classes, 1)}
        self._last = (results, images)
        return results

    def summary(self) -> str:
        """One line with every top-k and the image count; uses the last ``compute()``."""
        if self._last is None:
            self.compute()
        results, images = self._last
        return f"{self.task} accuracy over {images} images: " + ", ".join(
            f"{key.split('/')[-1]} {value:.2f}" for key, value in results.items())
