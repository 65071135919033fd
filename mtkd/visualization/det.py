"""Drawing detections: labelled boxes, in the colours of the seg classes of the same objects."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.utils import draw_bounding_boxes

from mtkd.registry import DRAWERS
from mtkd.visualization.base import Drawer, class_colours, image_scale


@DRAWERS.register_module()
class BoxDrawer(Drawer):
    """Boxes ``{"boxes": [K, 4] xyxy, "scores": [K], "labels": [K]}`` (those with score >= ``score_thr``) or
    the ground truth ``sample["boxes"]``/``sample["labels"]``, each with its class name (and score). Box
    class k gets colour k + 1, the seg colour of the same category in COCO-format sets."""

    def __init__(self, task: str, class_names: Sequence[str] | None = None, score_thr: float = 0.3):
        super().__init__(task, class_names)
        self.score_thr = float(score_thr)

    def draw(self, image: torch.Tensor, pred: Mapping[str, torch.Tensor]) -> torch.Tensor:
        keep = pred["scores"].cpu() >= self.score_thr
        labels = pred["labels"].cpu()[keep].tolist()
        text = [f"{self.name(int(label))} {float(score):.2f}" for label, score in zip(labels, pred["scores"].cpu()[keep])]
        return self._boxes(image, pred["boxes"].cpu()[keep], labels, text)

    def draw_target(self, image: torch.Tensor, sample: Mapping[str, Any]) -> torch.Tensor:
        labels = sample["labels"].cpu().tolist()
        sx, sy = image_scale(image, sample)
        boxes = sample["boxes"].cpu().float() * torch.tensor([sx, sy, sx, sy])
        return self._boxes(image, boxes, labels, [self.name(int(label)) for label in labels])

    def describe(self, pred: Mapping[str, torch.Tensor]) -> str:
        return f"{int((pred['scores'] >= self.score_thr).sum())} boxes"

    def _boxes(self, image: torch.Tensor, boxes: torch.Tensor, labels: list[int], text: list[str]) -> torch.Tensor:
        if not len(boxes):
            return image
        colours = class_colours(max(len(self.class_names or ()), max(labels) + 1) + 1)
        width = max(1, min(image.shape[-2:]) // 128)
        return draw_bounding_boxes(image, boxes.float(), labels=text, colors=[colours[k + 1] for k in labels],
                                   width=width, label_colors="black", fill_labels=True)
