"""Image classification head: global average pool of the coarsest map, dropout, linear."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.models.heads.base import check_class_targets, resolve_loss_weights
from mtkd.registry import MODELS


@MODELS.register_module()
class ClsHead(nn.Module):
    """GAP of the coarsest (largest-stride) input map ``[B, C, h, w]`` -> dropout -> linear -> logits
    ``[B, num_classes]``; cross-entropy loss with optional label smoothing (Szegedy et al. 2016).
    """

    batch_keys = ("cls",)

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], num_classes: int,
                 dropout: float = 0.0, label_smoothing: float = 0.0, loss_weights: Mapping[str, float] | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ClsHead: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"ClsHead: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.level = max(range(len(in_strides)), key=lambda i: in_strides[i])
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels[self.level], num_classes)
        self.loss_weights = resolve_loss_weights(loss_weights, {"ce": 1.0}, "ClsHead")

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats`` (the neck's maps) -> logits ``[B, num_classes]``."""
        pooled = feats[self.level].mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))

    def loss(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Cross-entropy of the logits against ``batch['cls']`` (long ``[B]``)."""
        target = batch["cls"]
        if target.shape != raw.shape[:1]:
            raise ValueError(f"ClsHead.loss: batch['cls'] must be long [B] with B={raw.shape[0]}, "
                             f"got {tuple(target.shape)}")
        check_class_targets(target, self.num_classes, "ClsHead.loss batch['cls']")
        ce = F.cross_entropy(raw, target.long(), label_smoothing=self.label_smoothing)
        return {"ce": ce * self.loss_weights["ce"]}

    @torch.no_grad()
    def predict(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Softmax probabilities, float ``[B, num_classes]`` (row ``i`` is image ``i``)."""
        return raw.float().softmax(dim=1)

    def output_signature(self) -> dict:
        """What the raw output indexes, for the teacher/student compatibility check."""
        return {"head": "ClsHead", "output": "logits [B, C]", "num_classes": self.num_classes}
