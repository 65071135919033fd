"""Semantic segmentation head: Semantic-FPN fusion of the neck's maps into per-pixel class logits."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.models.heads.base import check_class_targets, conv_norm_act, input_hw, resolve_loss_weights
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
        self.levels = [i for i, s in enumerate(in_strides) if s >= out_stride]
        if not self.levels:
            raise ValueError(f"SegHead: no input level has stride >= out_stride={out_stride} "
                             f"(neck strides {list(in_strides)})")
        self.num_classes, self.out_stride, self.ignore_index = num_classes, out_stride, ignore_index
        self.branches = nn.ModuleList(
            self._branch(in_channels[i], channels, in_strides[i], out_stride) for i in self.levels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.loss_weights = resolve_loss_weights(loss_weights, {"ce": 1.0}, "SegHead")

    @staticmethod
    def _branch(c_in: int, channels: int, stride: int, out_stride: int) -> nn.Sequential:
        num_up = int(round(math.log2(stride / out_stride)))
        if 2 ** num_up * out_stride != stride:
            raise ValueError(f"SegHead: stride {stride} is not out_stride={out_stride} times a power of 2")
        stages: list[nn.Module] = []
        for k in range(max(num_up, 1)):
            stages.append(conv_norm_act(c_in if k == 0 else channels, channels))
            if num_up:
                stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        return nn.Sequential(*stages)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats`` (the neck's maps) -> logits ``[B, num_classes, H/out_stride, W/out_stride]``."""
        outs = [branch(feats[i]) for i, branch in zip(self.levels, self.branches)]
        size = outs[0].shape[-2:]
        fused = outs[0]
        for out in outs[1:]:
            fused = fused + (out if out.shape[-2:] == size else
                             F.interpolate(out, size=size, mode="bilinear", align_corners=False))
        return self.classifier(self.dropout(fused))

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
        """Per image a long ``[H, W]`` class map at the input size (argmax of the upsampled logits)."""
        logits = F.interpolate(raw, size=input_hw(batch), mode="bilinear", align_corners=False)
        return list(logits.argmax(dim=1))

    def output_signature(self) -> dict:
        """What the raw output indexes, for the teacher/student compatibility check."""
        return {"head": "SegHead", "output": "logits [B, C, h, w]", "num_classes": self.num_classes}
