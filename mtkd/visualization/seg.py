"""Drawing a semantic segmentation: class colours over the image, background left clear, ignore in grey."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.utils import draw_segmentation_masks

from mtkd.registry import DRAWERS
from mtkd.structures import IGNORE_INDEX, class_map
from mtkd.visualization.base import Drawer, class_colours

IGNORE_COLOUR = (60, 60, 60)


@DRAWERS.register_module()
class SegMapDrawer(Drawer):
    """A class map long ``[H, W]`` (ground truth ``sample["seg"]``), or class scores float ``[C, h, w]`` (a
    prediction, argmax after resizing them to the image), as translucent colours:
    class k in ``class_colours(...)[k]`` (box class k of a COCO-format set shares seg class k + 1's colour),
    class 0 (background) left clear, ``IGNORE_INDEX`` dark grey."""

    def __init__(self, task: str, class_names: Sequence[str] | None = None, alpha: float = 0.45):
        super().__init__(task, class_names)
        self.alpha = float(alpha)

    def draw(self, image: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        classes = class_map(pred.cpu(), tuple(image.shape[-2:])).long()
        present = [int(c) for c in classes.unique() if int(c) != 0]
        if not present:
            return image
        colours = class_colours(max(len(self.class_names or ()), max(present) + 1))
        palette = [IGNORE_COLOUR if c == IGNORE_INDEX else colours[c % len(colours)] for c in present]
        masks = torch.stack([classes == c for c in present])
        return draw_segmentation_masks(image, masks, alpha=self.alpha, colors=palette)

    def draw_target(self, image: torch.Tensor, sample: Mapping[str, Any]) -> torch.Tensor:
        return self.draw(image, sample["seg"])
