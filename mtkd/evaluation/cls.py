"""Classification metric: top-1 and top-5 accuracy from hit counts kept on the device, or, for multi-label
classes, the mean over classes of the average precision."""
from __future__ import annotations

import numpy as np
import torch

from mtkd.dist import all_gather_objects, all_reduce
from mtkd.registry import METRICS


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of one class, as scikit-learn's ``average_precision_score``: the sum over score
    thresholds of the precision there times the recall gained there; tied scores form one threshold.

    Args: scores ``[N]``, positive ``[N]`` bool with at least one True.
    """
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]   # where each threshold ends
    hits = np.cumsum(positive)[last_of_tie]
    precision = hits / (last_of_tie + 1)
    recall_gain = np.diff(np.r_[0, hits]) / hits[-1]
    return float((precision * recall_gain).sum())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """``(mAP, classes)``: AP averaged over the classes of ``targets [N, C]`` with at least one positive
    (``scores [N, C]``); 0.0 and 0 classes when none has a positive."""
    aps = [average_precision(scores[:, c], targets[:, c] > 0) for c in range(targets.shape[1]) if targets[:, c].any()]
    return (float(np.mean(aps)) if aps else 0.0), len(aps)


@METRICS.register_module()
class ClsMetric:
    """``cls/top1`` and, when there are at least 5 classes, ``cls/top5``, in percent; for multi-label
    classes ``cls/mAP`` instead, in percent.

    The number of classes comes from ``num_classes``, else ``dataset.num_classes[task]``, else the width
    of the first predictions. Under DDP ``compute()`` sums the hit counts of all ranks, so the engine must
    pass only real samples (no DistributedSampler padding) or padded images count twice.

    Multi-label (``multi_label``, else ``dataset.head_args[task]["multi_label"]``: the targets are multi-hot
    ``[B, C]``): ``mAP`` is the mean over the classes with at least one positive image of the average
    precision of the scores (scikit-learn's ``average_precision_score``, ties grouped), over every rank's
    images (gathered), and is the primary metric; ``topk`` is not used.
    """

    primary = "cls/top1"

    def __init__(self, task: str = "cls", dataset=None, topk: tuple[int, ...] = (1, 5),
                 num_classes: int | None = None, multi_label: bool | None = None):
        self.task = task
        self.topk = tuple(sorted({int(k) for k in topk}))
        if 1 not in self.topk or self.topk[0] < 1:
            raise ValueError(f"ClsMetric(task={task!r}): topk must hold 1 (the primary metric) and only "
                             f"positive values, got {topk!r}")
        counts = getattr(dataset, "num_classes", None) or {}
        self.num_classes = int(num_classes) if num_classes is not None else (
            int(counts[task]) if task in counts else None)
        if multi_label is None:
            multi_label = ((getattr(dataset, "head_args", None) or {}).get(task) or {}).get("multi_label", False)
        self.multi_label = bool(multi_label)
        self.primary = f"{task}/mAP" if self.multi_label else f"{task}/top1"
        self.reset()

    def reset(self) -> None:
        self.counts: torch.Tensor | None = None   # [len(topk) + 1]: hits per k, then images; preds' device
        self.scores: list[np.ndarray] = []         # multi-label: [B, C] per batch
        self.targets: list[np.ndarray] = []
        self._last: tuple | None = None             # (results, images[, classes scored]) of compute()

    def update(self, preds: torch.Tensor, batch: dict) -> None:
        """preds: ``[B, C]`` probabilities (or logits); labels ``batch[task]`` long ``[B]`` (multi-label:
        multi-hot ``[B, C]``)."""
        if self.task not in batch:
            raise KeyError(f"ClsMetric: the batch has no {self.task!r} labels (keys: {sorted(batch)})")
        target = batch[self.task].to(preds.device)
        self._check_shapes(preds, target)
        if self.multi_label:
            self._update_multi_label(preds, target)
            return
        width = preds.shape[1]
        bad = target[(target < 0) | (target >= width)]
        if bad.numel():
            raise ValueError(f"ClsMetric(task={self.task!r}): label {int(bad[0])} is outside 0..{width - 1}")
        ranked = preds.topk(min(max(self.topk), width), dim=1).indices   # [B, k]
        hits = ranked == target[:, None]
        images = torch.tensor(len(target), device=preds.device)
        counts = torch.stack([hits[:, :k].any(1).sum() for k in self.topk] + [images])
        self.counts = counts if self.counts is None else self.counts + counts
        self._last = None

    def _check_shapes(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        expected = "multi-hot labels [B, C]" if self.multi_label else "labels [B]"
        shape = preds.shape if self.multi_label else preds.shape[:1]
        if preds.ndim != 2 or target.shape != shape:
            hint = ("; multi-hot labels need ClsMetric(multi_label=True) (set from the dataset's head_args)"
                    if not self.multi_label and target.shape == preds.shape else "")
            raise ValueError(f"ClsMetric(task={self.task!r}): expected predictions [B, C] and {expected}, got "
                             f"{tuple(preds.shape)} and {tuple(target.shape)}{hint}")
        if self.num_classes is None:
            self.num_classes = preds.shape[1]
        if preds.shape[1] != self.num_classes:
            raise ValueError(f"ClsMetric(task={self.task!r}): predictions have {preds.shape[1]} classes, expected "
                             f"{self.num_classes}")

    def _update_multi_label(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        target = target.detach().cpu().numpy()
        if not np.isin(target, (0, 1)).all():
            raise ValueError(f"ClsMetric(task={self.task!r}): multi-hot labels must be 0 or 1, got "
                             f"{np.unique(target[~np.isin(target, (0, 1))])[:5].tolist()}")
        self.scores.append(preds.detach().float().cpu().numpy())
        self.targets.append(target.astype(bool))
        self._last = None

    def compute(self) -> dict[str, float]:
        """Accuracy over all ranks' images, in percent; top-k only for k <= the number of classes."""
        if self.multi_label:
            return self._compute_map()
        local = self.counts if self.counts is not None else torch.zeros(len(self.topk) + 1, dtype=torch.long)
        total = all_reduce(local, "sum").cpu()
        classes = int(all_reduce(torch.tensor([self.num_classes or 0]), "max"))
        images = int(total[-1])
        results = {f"{self.task}/top{k}": (float(hits) / images * 100 if images else 0.0)
                   for k, hits in zip(self.topk, total[:-1].tolist()) if k <= max(classes, 1)}
        self._last = (results, images)
        return results

    def _compute_map(self) -> dict[str, float]:
        """mAP in percent over the images of every rank (scores and labels gathered to each rank)."""
        width = self.num_classes or 0
        parts = [p for p in all_gather_objects((self.scores, self.targets)) if p[0]]
        scores = np.concatenate([s for part in parts for s in part[0]]) if parts else np.zeros((0, width))
        targets = np.concatenate([t for part in parts for t in part[1]]) if parts else np.zeros((0, width), bool)
        value, classes = mean_average_precision(scores, targets)
        results = {f"{self.task}/mAP": value * 100}
        self._last = (results, len(targets), classes)
        return results

    def summary(self) -> str:
        """One line with every top-k (or the mAP) and the image count; uses the last ``compute()``."""
        if self._last is None:
            self.compute()
        results, images, *classes = self._last
        scored = f" ({classes[0]} classes with positives)" if classes else ""
        what = "mAP" if self.multi_label else "accuracy"
        return f"{self.task} {what} over {images} images{scored}: " + ", ".join(
            f"{key.split('/')[-1]} {value:.2f}" for key, value in results.items())
