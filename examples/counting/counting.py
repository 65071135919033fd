"""A fifth task from outside the package: counting the objects of each category in an image.

Everything a task needs, registered from this one module (named by a config's ``custom_imports``), with no
edit of ``mtkd/`` (see the README, "Add your own task"):

- ``ObjectCountTarget`` (TARGETS): the ground truth, ``count`` float ``[C]``, the number of non-crowd
  objects of each category that survive the pipeline (a crop that drops a box drops its count too);
- ``CountHead`` (MODELS): global average pool of the coarsest map -> MLP -> ``log(1 + count)`` per category,
  raw ``[B, C]``; smooth-L1 loss in that log space; ``predict`` gives counts ``[B, C]``;
- ``CountMetric`` (METRICS): ``count/acc`` (images whose rounded counts are all right, %; primary),
  ``count/MAE`` (mean over images of the summed absolute error over categories);
- ``CountKDLoss`` (MODELS): MSE between student and teacher raw outputs (log counts), a soft loss;
- ``CountDrawer`` (DRAWERS): the counts written on the image, and a line for ``tools/predict.py``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtkd import dist
from mtkd.data.targets import TargetReader
from mtkd.registry import DRAWERS, METRICS, MODELS, TARGETS
from mtkd.visualization import Drawer, draw_text


@TARGETS.register_module()
class ObjectCountTarget(TargetReader):
    """``count`` float ``[C]``: objects per category (COCO categories, in label order) after the pipeline."""

    batch_keys = ("count",)
    needs_instances = True   # read the boxes that survive the augmentation

    def setup(self, dataset: Any, name: str) -> None:
        super().setup(dataset, name)
        self.class_names = list(dataset.category_names)   # one count per category: num_classes from the data

    def to_sample(self, info: dict, objects: list[dict], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        labels = [self.dataset.cat_index[objects[i]["category_id"]] for i in out["box_ids"]]
        counts = np.bincount(np.asarray(labels, np.int64), minlength=len(self.class_names))
        return {"count": torch.from_numpy(counts.astype(np.float32))}


@MODELS.register_module()
class CountHead(nn.Module):
    """GAP of the coarsest neck map ``[B, C_in, h, w]`` -> Linear-ReLU-Linear -> ``log(1 + count)`` ``[B, C]``."""

    batch_keys = ("count",)

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], num_classes: int, hidden: int = 64):
        super().__init__()
        self.level = max(range(len(in_strides)), key=lambda i: in_strides[i])
        self.num_classes = num_classes
        self.mlp = nn.Sequential(nn.Linear(in_channels[self.level], hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, num_classes))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.mlp(feats[self.level].mean(dim=(2, 3)))

    def loss(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Smooth L1 in log space: a miss by one costs more for 1 object than for 10."""
        return {"l1": F.smooth_l1_loss(raw, torch.log1p(batch["count"].float()))}

    @torch.no_grad()
    def predict(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return torch.expm1(raw.float()).clamp(min=0)

    def output_signature(self) -> dict:
        return {"head": "CountHead", "output": "log(1 + count) [B, C]", "num_classes": self.num_classes}


@METRICS.register_module()
class CountMetric:
    """``count/acc`` (% of images with every rounded count right) and ``count/MAE``; summed over DDP ranks."""

    def __init__(self, task: str = "count", dataset=None):
        self.task, self.primary = task, f"{task}/acc"
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64)   # exact images, absolute error, images

    def update(self, preds: torch.Tensor, batch: Mapping[str, Any]) -> None:
        target = batch["count"].to(preds.device).float()
        exact = (preds.round() == target).all(dim=1).sum()
        error = (preds - target).abs().sum()
        self.sums += torch.stack([exact.double(), error.double(), torch.tensor(len(target), dtype=torch.float64)]).cpu()

    def compute(self) -> dict[str, float]:
        exact, error, images = dist.all_reduce(self.sums, "sum").tolist()
        images = max(images, 1.0)
        return {f"{self.task}/acc": exact / images * 100, f"{self.task}/MAE": error / images}

    def summary(self) -> str:
        return f"{self.task}: " + ", ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in self.compute().items())


def count_kd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between log-count outputs ``[B, C]`` (the teacher's as a fixed target)."""
    return F.mse_loss(student.float(), teacher.float())


@MODELS.register_module()
class CountKDLoss(nn.Module):
    """Soft loss of the counting task: MSE to the teacher's log counts, times ``loss_weight``."""

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * count_kd_loss(student, teacher)


@DRAWERS.register_module()
class CountDrawer(Drawer):
    """Counts ``[C]`` as text, e.g. ``count: 2 circle, 1 star``."""

    def draw(self, image: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return draw_text(image, f"{self.task}: {self.describe(pred)}", row=1)

    def draw_target(self, image: torch.Tensor, sample: Mapping[str, Any]) -> torch.Tensor:
        return self.draw(image, sample["count"])

    def describe(self, pred: torch.Tensor) -> str:
        counts = pred.round().long().tolist()
        return ", ".join(f"{n} {self.name(k)}" for k, n in enumerate(counts) if n > 0) or "nothing"
