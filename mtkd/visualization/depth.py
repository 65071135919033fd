"""Drawing a depth map: colours from near (warm) to far (cool) on a panel next to the image."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mtkd.registry import DRAWERS
from mtkd.visualization.base import Drawer, fit_to

# Anchor colours of the map from near to far (a turbo-like ramp), interpolated linearly.
RAMP = torch.tensor([[122, 4, 3], [249, 117, 29], [239, 229, 58], [95, 252, 94], [40, 188, 235], [48, 18, 59]],
                    dtype=torch.float32)


@DRAWERS.register_module()
class DepthMapDrawer(Drawer):
    """A depth map float ``[H, W]`` in metres (prediction, or ground truth ``sample["depth"]``, 0 = unknown,
    drawn black) as colours over ``[min_depth, max_depth]`` (default: the map's own valid range)."""

    panel = True

    def __init__(self, task: str, class_names: Sequence[str] | None = None, min_depth: float | None = None,
                 max_depth: float | None = None):
        super().__init__(task, class_names)
        self.min_depth, self.max_depth = min_depth, max_depth

    def draw(self, image: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        depth = fit_to(pred.detach().float().cpu(), image)
        valid = depth > 0
        if not bool(valid.any()):
            return torch.zeros_like(image)
        low = self.min_depth if self.min_depth is not None else float(depth[valid].min())
        high = self.max_depth if self.max_depth is not None else float(depth[valid].max())
        position = ((depth - low) / max(high - low, 1e-6)).clamp(0, 1) * (len(RAMP) - 1)
        index = position.floor().long().clamp(max=len(RAMP) - 2)
        weight = (position - index)[..., None]
        colours = RAMP[index] * (1 - weight) + RAMP[index + 1] * weight          # [H, W, 3]
        colours[~valid] = 0
        return colours.round().to(torch.uint8).permute(2, 0, 1)

    def draw_target(self, image: torch.Tensor, sample: Mapping[str, Any]) -> torch.Tensor:
        return self.draw(image, sample["depth"])

    def describe(self, pred: torch.Tensor) -> str:
        valid = pred[pred > 0]
        return f"depth {float(valid.min()):.2f}-{float(valid.max()):.2f} m" if valid.numel() else "depth unknown"
