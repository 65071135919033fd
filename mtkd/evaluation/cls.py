"""Classification metric: top-1 and top-5 accuracy."""
from __future__ import annotations

import torch

from mtkd.engine.dist import all_reduce_sum
from mtkd.registry import METRICS


@METRICS.register_module()
class ClsMetric:
    """``cls/top1`` (and ``cls/top5`` when there are at least 5 classes), in percent, summed over ranks."""

    primary = "cls/top1"

    def __init__(self, task: str = "cls", dataset=None, topk: tuple[int, ...] = (1, 5), num_classes: int | None = None):
        self.task = task
        self.num_classes = int(num_classes or dataset.num_classes[task])
        self.topk = tuple(k for k in topk if k <= self.num_classes)
        self.primary = f"{task}/top1"
        self.reset()

    def reset(self) -> None:
        self.correct = torch.zeros(len(self.topk), dtype=torch.float64)
        self.count = torch.zeros(1, dtype=torch.float64)

    def update(self, preds: torch.Tensor, batch: dict) -> None:
        """preds: ``[B, C]`` probabilities or logits; targets ``batch[task]`` long ``[B]``."""
        target = batch[self.task].to(preds.device)
        ranked = preds.topk(max(self.topk), dim=1).indices
        hits = ranked == target[:, None]
        self.correct += torch.tensor([float(hits[:, :k].any(1).sum()) for k in self.topk], dtype=torch.float64)
        self.count += len(target)

    def compute(self) -> dict[str, float]:
        device = "cuda" if torch.distributed.is_available() and torch.distributed.is_initialized() and \
            torch.distributed.get_backend() == "nccl" else "cpu"
        packed = all_reduce_sum(torch.cat([self.correct, self.count]).to(device)).cpu()
        count = float(packed[-1])
        return {f"{self.task}/top{k}": (float(c) / count * 100 if count else 0.0) for k, c in zip(self.topk, packed[:-1])}

    def summary(self) -> str:
        return f"{self.task}: " + ", ".join(f"{k} {v:.2f}" for k, v in self.compute().items())
