"""Drawing an image-level class: its name (and probability) written in the top-left corner."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtkd.registry import DRAWERS
from mtkd.visualization.base import Drawer, draw_text


@DRAWERS.register_module()
class ClassLabelDrawer(Drawer):
    """The most likely class of probabilities ``[C]`` with its probability, or the ground truth
    ``sample["cls"]``, as text; ``describe`` gives ``name<TAB>probability`` (the original recipe's output)."""

    def draw(self, image: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        name, prob = self.top(pred)
        return draw_text(image, f"{self.task}: {name} {prob:.2f}")

    def draw_target(self, image: torch.Tensor, sample: Mapping[str, Any]) -> torch.Tensor:
        return draw_text(image, f"{self.task}: {self.name(int(sample['cls']))}")

    def describe(self, pred: torch.Tensor) -> str:
        name, prob = self.top(pred)
        return f"{name}\t{prob:.4f}"

    def top(self, probs: torch.Tensor) -> tuple[str, float]:
        """The most likely class of ``probs [C]`` as (name, probability)."""
        prob, index = probs.float().max(dim=0)
        return self.name(int(index)), float(prob)
