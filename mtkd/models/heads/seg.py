"""Semantic segmentation head: Semantic-FPN fusion of the neck's maps into per-pixel class logits."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.models.heads.base import check_class_targets, fpn_branches, fuse_branches, resolve_loss_weights
from mtkd.registry import MODELS
from mtkd.structures import IGNORE_INDEX


@MODELS.register_module()
class SegHead(nn.Module):
    """Semantic FPN (Kirillov et al. 2019, "Panoptic Feature Pyramid Networks"): every level with stride
    >= ``out_stride`` goes through conv3x3-BN-ReLU (+ 2x upsampling) stages down to ``out_stride``; the
    branches are summed and a 1x1 conv gives logits ``[B, num_classes, H/out_stride, W/out_stride]``.
    """

    batch_keys = ("seg",)

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], num_classes: int,
                 channels: int = 128, out_stride: int = 4, ignore_index: int = IGNORE_INDEX,
                 dropout: float = 0.0, loss_weights: Mapping[str, float] | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"SegHead: num_classes must be >= 1, got {num_classes}")
        self.levels, self.branches = fpn_branches(in_channels, in_strides, channels, out_stride, "SegHead")
        self.num_classes, self.out_stride, self.ignore_index = num_classes, out_stride, ignore_index
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.loss_weights = resolve_loss_weights(loss_weights, {"ce": 1.0}, "SegHead")

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats`` (the neck's maps) -> logits ``[B, num_classes, H/out_stride, W/out_stride]``."""
        return self.forward_pred(self.forward_tower(feats))

    # -- the tower / prediction split (heads/base.py): the fused map, then the 1x1 classifier
    def forward_tower(self, feats: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """``{"fused": [the fused map [B, channels, H/out_stride, W/out_stride]]}`` (after dropout)."""
        return {"fused": [self.dropout(fuse_branches(feats, self.levels, self.branches))]}

    def forward_pred(self, tower: dict[str, list[torch.Tensor]]) -> torch.Tensor:
        return self.classifier(tower["fused"][0])

    def tower_channels(self) -> dict[str, int]:
        return {"fused": self.classifier.in_channels}

    def loss(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Cross-entropy over pixels (``ignore_index`` excluded), logits upsampled to the label size."""
        target = batch["seg"]
        if target.dim() != 3 or target.shape[0] != raw.shape[0]:
            raise ValueError(f"SegHead.loss: batch['seg'] must be long [B, H, W] with B={raw.shape[0]}, "
                             f"got {tuple(target.shape)}")
        check_class_targets(target, self.num_classes, "SegHead.loss batch['seg']", self.ignore_index)
        logits = F.interpolate(raw, size=target.shape[-2:], mode="bilinear", align_corners=False)
        if bool((target == self.ignore_index).all()):  # nothing labelled: zero that still has a graph
            return {"ce": logits.sum() * 0.0}
        ce = F.cross_entropy(logits, target.long(), ignore_index=self.ignore_index)
        return {"ce": ce * self.loss_weights["ce"]}

    @torch.no_grad()
    def predict(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        """Per image its float logits ``[num_classes, H/out_stride, W/out_stride]``; the argmax comes after
        resizing them to where they are used (``mtkd.structures.class_map``: the input for drawing;
        ``map_to_original`` for the metric, as mmseg resizes logits to the original image)."""
        return list(raw.float())

    def output_signature(self) -> dict:
        """What the raw output indexes, for the teacher/student compatibility check."""
        return {"head": "SegHead", "output": "logits [B, C, h, w]", "num_classes": self.num_classes}
