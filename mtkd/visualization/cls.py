"""Drawing image-level classes: the name (and probability) of the class, or of each class present
(multi-label), written in the top-left corner."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtkd.registry import DRAWERS
from mtkd.visualization.base import Drawer, draw_text


@DRAWERS.register_module()
class ClassLabelDrawer(Drawer):
    """The most likely class of probabilities ``[C]`` with its probability, or the ground truth
    ``sample["cls"]``, as text; ``describe`` gives ``name<TAB>probability`` (the original recipe's output).

    Multi-label predictions (independent sigmoid probabilities ``[C]``) list every class at or above
    ``threshold``, ``name:probability`` by decreasing probability, comma-separated (``-`` when none), and a
    multi-hot target ``[C]`` its classes. ``multi_label`` comes from the data (``build_drawers`` passes the
    ``head_args`` the head was built with), as the head's own does.
    """

    def __init__(self, task: str, class_names=None, threshold: float = 0.5, multi_label: bool = False):
        super().__init__(task, class_names)
        self.threshold, self.multi_label = float(threshold), bool(multi_label)

    def draw(self, image: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            return draw_text(image, f"{self.task}: {self.describe(pred)}")
        name, prob = self.top(pred)
        return draw_text(image, f"{self.task}: {name} {prob:.2f}")

    def draw_target(self, image: torch.Tensor, sample: Mapping[str, Any]) -> torch.Tensor:
        target = sample["cls"]
        if target.dim() == 1:   # multi-hot [C]
            names = [self.name(int(i)) for i in torch.nonzero(target > 0).flatten()]
            return draw_text(image, f"{self.task}: {','.join(names) or '-'}")
        return draw_text(image, f"{self.task}: {self.name(int(target))}")

    def describe(self, pred: torch.Tensor) -> str:
        if self.multi_label:
            probs = pred.float()
            ranked = [int(i) for i in probs.argsort(descending=True) if float(probs[i]) >= self.threshold]
            return ",".join(f"{self.name(i)}:{float(probs[i]):.4f}" for i in ranked) or "-"
        name, prob = self.top(pred)
        return f"{name}\t{prob:.4f}"

    def top(self, probs: torch.Tensor) -> tuple[str, float]:
        """The most likely class of ``probs [C]`` as (name, probability)."""
        prob, index = probs.float().max(dim=0)
        return self.name(int(index)), float(prob)
