"""Label assignment for the dense detection head: which grid point learns which ground-truth box."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mtkd.registry import MODELS


@MODELS.register_module()
class FCOSAssigner:
    """FCOS assignment with center sampling and per-level scale ranges (Tian et al. 2019, "FCOS: Fully
    Convolutional One-Stage Object Detection", ICCV; center sampling from the authors' FCOS repository).

    A point is positive for a box when it lies within ``center_radius * stride`` of the box center (and
    inside the box), and the largest of its distances to the box sides ``max(l, t, r, b)`` lies in its
    level's scale range; a point with several such boxes takes the smallest. ``scale_ranges`` default to
    FCOS's ``(0, 64), (64, 128), ..., (., inf)``: level ``k`` ends at ``8 * stride_k``, the last is open.
    A box no point claims (smaller than a stride, cut by the ranges, or whose points all went to smaller
    boxes) gets the point nearest its center on the level whose range holds (or, with custom ranges that
    leave a gap, lies nearest) half its longer side, among points that are free or held by a larger box
    that keeps another point; smaller boxes choose first. Where that level has no such point, the nearest
    level that has one serves, and failing that any point whose box keeps another. No box ever gives up
    its last point, so every box trains some point (as ATSS ensures) whenever there are at least as many
    points as boxes.
    """

    def __init__(self, strides: Sequence[int], center_radius: float = 2.5,
                 scale_ranges: Sequence[Sequence[float]] | None = None):
        self.strides = [int(s) for s in strides]
        if not self.strides or self.strides != sorted(set(self.strides)):
            raise ValueError(f"FCOSAssigner: strides must increase strictly (finest level first), got {self.strides}")
        if scale_ranges is None:
            bounds = [0.0, *(8.0 * s for s in self.strides[:-1]), math.inf]
            scale_ranges = list(zip(bounds[:-1], bounds[1:]))
        if len(scale_ranges) != len(self.strides) or any(len(r) != 2 or r[0] > r[1] for r in scale_ranges):
            raise ValueError(f"FCOSAssigner: scale_ranges must be one (low, high) pair per stride {self.strides}, "
                             f"got {scale_ranges}")
        if center_radius <= 0:
            raise ValueError(f"FCOSAssigner: center_radius must be > 0, got {center_radius}")
        self.center_radius = float(center_radius)
        self.scale_ranges = [(float(lo), float(hi)) for lo, hi in scale_ranges]

    def assign(self, points: torch.Tensor, point_strides: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """Ground-truth index per point, long ``[N]`` (-1: background).

        Args:
            points: ``[N, 2]`` point centers (x, y) in input pixels.
            point_strides: ``[N]`` stride of each point's level (one of ``self.strides``).
            gt_boxes: ``[M, 4]`` xyxy boxes in input pixels.
        """
        assigned = torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
        if gt_boxes.numel() == 0:
            return assigned
        low, high = self._point_ranges(point_strides)
        x, y = points[:, 0:1], points[:, 1:2]
        x1, y1, x2, y2 = gt_boxes.unbind(dim=1)                                          # [M] each
        max_dist = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=-1).amax(dim=-1)    # [N, M]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        radius = self.center_radius * point_strides[:, None].to(points.dtype)              # [N, 1]
        in_center = ((x > torch.maximum(x1, cx - radius)) & (x < torch.minimum(x2, cx + radius))
                     & (y > torch.maximum(y1, cy - radius)) & (y < torch.minimum(y2, cy + radius)))
        in_range = (max_dist >= low[:, None]) & (max_dist <= high[:, None])
        area = (x2 - x1) * (y2 - y1)
        cost = torch.where(in_center & in_range, area[None, :], torch.full_like(max_dist, math.inf))
        min_area, best = cost.min(dim=1)
        assigned = torch.where(torch.isfinite(min_area), best, assigned)
        self._claim_unmatched(assigned, points, low, high, gt_boxes, area)
        return assigned

    def _point_ranges(self, point_strides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = torch.empty(point_strides.shape, dtype=torch.float32, device=point_strides.device)
        high = torch.empty_like(low)
        seen = torch.zeros(point_strides.shape, dtype=torch.bool, device=point_strides.device)
        for stride, (lo, hi) in zip(self.strides, self.scale_ranges):
            mask = point_strides == stride
            low[mask], high[mask], seen = lo, hi, seen | mask
        if not bool(seen.all()):
            unknown = torch.unique(point_strides[~seen]).tolist()
            raise ValueError(f"FCOSAssigner: points with strides {unknown} but the assigner knows {self.strides}")
        return low, high

    @staticmethod
    def _claim_unmatched(assigned: torch.Tensor, points: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                         gt_boxes: torch.Tensor, area: torch.Tensor) -> None:
        """Give each box that no point took one point (see the class docstring), smallest box first, in place."""
        matched = torch.zeros(len(gt_boxes), dtype=torch.bool, device=assigned.device)
        matched[assigned[assigned >= 0]] = True
        unmatched = torch.nonzero(~matched).flatten()
        for gt in unmatched[area[unmatched].argsort(stable=True)].tolist():  # smallest first: it keeps its point
            point = FCOSAssigner._fallback_point(gt, assigned, points, low, high, gt_boxes, area)
            if point is not None:
                assigned[point] = gt

    @staticmethod
    def _fallback_point(gt: int, assigned: torch.Tensor, points: torch.Tensor, low: torch.Tensor,
                        high: torch.Tensor, gt_boxes: torch.Tensor, area: torch.Tensor) -> int | None:
        """Index of the point box ``gt`` takes, or None when every point is the last one of another box.

        Taking a point never leaves its box without one: a box with a single point keeps it (before this
        rule a smaller box could take the only point of a larger one, which then trained nothing).
        """
        owner = assigned.clamp(min=0)
        count = torch.bincount(assigned[assigned >= 0], minlength=len(gt_boxes))  # [M] points per box
        free = assigned < 0
        spare = ~free & (count[owner] >= 2)                                       # [N] its box keeps another
        x1, y1, x2, y2 = gt_boxes[gt].tolist()
        half_side = max(x2 - x1, y2 - y1) / 2
        gap = (low - half_side).clamp(min=0) + (half_side - high).clamp(min=0)  # 0 where the range holds it
        dist = ((points - points.new_tensor([(x1 + x2) / 2, (y1 + y2) / 2])) ** 2).sum(dim=1)
        for pool in (free | (spare & (area[owner] > area[gt])), spare):  # FCOS's order first, then any spare
            if bool(pool.any()):
                level = pool & (gap == gap[pool].min())  # its own level, else the one whose range is nearest
                return int(dist.masked_fill(~level, math.inf).argmin())
        return None
