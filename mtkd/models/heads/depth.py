"""Monocular depth head: Semantic-FPN fusion of the neck's maps into a log-depth map."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.models.heads.base import fpn_branches, fuse_branches, input_hw, resolve_loss_weights
from mtkd.registry import MODELS


def silog_loss(log_pred: torch.Tensor, log_gt: torch.Tensor, valid: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014, "Depth Map Prediction from a Single Image using a
    Multi-Scale Deep Network", eq. 4): per image ``mean(d^2) - lam * mean(d)^2`` over its valid pixels with
    ``d = log pred - log gt``, then the mean over the images that have a valid pixel.

    Args: log_pred, log_gt ``[B, H, W]``; valid bool ``[B, H, W]`` (``log_gt`` is not read elsewhere).
    Returns 0 attached to the graph of ``log_pred`` when no pixel is valid.
    """
    d = torch.where(valid, log_pred - log_gt, torch.zeros_like(log_pred))
    count = valid.flatten(1).sum(1)                                    # [B]
    mean_d = d.flatten(1).sum(1) / count.clamp(min=1)
    mean_d2 = (d ** 2).flatten(1).sum(1) / count.clamp(min=1)
    per_image = mean_d2 - lam * mean_d ** 2
    has = count > 0
    if not bool(has.any()):
        return log_pred.sum() * 0.0
    return per_image[has].mean()


@MODELS.register_module()
class DepthHead(nn.Module):
    """Semantic FPN (Kirillov et al. 2019) fusion as in :class:`SegHead`, then a 1x1 conv to one channel:
    log-depth (log metres) ``[B, 1, H/out_stride, W/out_stride]``; ``predict`` returns ``exp`` of it.

    Hard loss terms (``loss_weights``; a term with weight 0 is not computed): ``silog``, the
    scale-invariant log loss of Eigen et al. 2014 with ``silog_lambda`` (0.5, as the paper trains), and
    ``l1``, the mean absolute error in metres over the batch's valid pixels. Pixels with depth 0 are
    unknown and ignored.
    """

    batch_keys = ("depth",)

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], channels: int = 128,
                 out_stride: int = 4, dropout: float = 0.0, silog_lambda: float = 0.5,
                 loss_weights: Mapping[str, float] | None = None):
        super().__init__()
        if not 0.0 <= silog_lambda <= 1.0:
            raise ValueError(f"DepthHead: silog_lambda must be in [0, 1] (1 = fully scale-invariant), "
                             f"got {silog_lambda}")
        self.levels, self.branches = fpn_branches(in_channels, in_strides, channels, out_stride, "DepthHead")
        self.out_stride, self.silog_lambda = out_stride, float(silog_lambda)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.regressor = nn.Conv2d(channels, 1, 1)
        self.loss_weights = resolve_loss_weights(loss_weights, {"silog": 1.0, "l1": 0.0}, "DepthHead")
        if not any(self.loss_weights.values()):
            raise ValueError(f"DepthHead: every loss weight is 0 ({self.loss_weights}); the head would not train")

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats`` (the neck's maps) -> log-depth ``[B, 1, H/out_stride, W/out_stride]``."""
        return self.regressor(self.dropout(fuse_branches(feats, self.levels, self.branches)))

    def loss(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``silog`` and/or ``l1`` over the pixels with depth > 0, log-depth upsampled to the label size."""
        target = batch["depth"]
        if target.dim() != 3 or target.shape[0] != raw.shape[0] or not target.is_floating_point():
            raise ValueError(f"DepthHead.loss: batch['depth'] must be float metres [B, H, W] with B={raw.shape[0]}, "
                             f"got {target.dtype} {tuple(target.shape)}")
        raw = raw.to(torch.promote_types(raw.dtype, torch.float32))   # autocast's half outputs: sums in fp32
        log_pred = F.interpolate(raw, size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        target = target.to(log_pred.dtype)
        valid = target > 0
        terms = {}
        if self.loss_weights["silog"]:
            log_gt = torch.log(torch.where(valid, target, torch.ones_like(target)))
            terms["silog"] = silog_loss(log_pred, log_gt, valid, self.silog_lambda)
        if self.loss_weights["l1"]:
            err = (log_pred.exp() - target).abs()
            terms["l1"] = err[valid].sum() / valid.sum() if bool(valid.any()) else log_pred.sum() * 0.0
        return {name: value * self.loss_weights[name] for name, value in terms.items()}

    @torch.no_grad()
    def predict(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Depth in metres, float ``[B, H, W]`` at the input size (row ``i`` is image ``i``): the log-depth
        upsampled bilinearly, as the loss sees it, then ``exp``."""
        up = F.interpolate(raw.float(), size=input_hw(batch), mode="bilinear", align_corners=False)
        return up[:, 0].exp()

    def output_signature(self) -> dict:
        """What the raw output indexes, for the teacher/student compatibility check."""
        return {"head": "DepthHead", "output": "log-depth [B, 1, h, w]"}
