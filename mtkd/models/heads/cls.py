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

    ``multi_label`` (set from the data: ``CocoMultiTaskDataset(image_labels="instances")``): the classes are
    independent; the loss is binary cross-entropy on each logit against the float multi-hot ``[B, C]``
    target (term ``bce``; label smoothing moves each binary target ``y`` to ``y (1 - e) + e / 2``) and
    ``predict`` gives sigmoid probabilities.
    """

    batch_keys = ("cls",)

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], num_classes: int,
                 dropout: float = 0.0, label_smoothing: float = 0.0, loss_weights: Mapping[str, float] | None = None,
                 multi_label: bool = False):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ClsHead: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"ClsHead: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.level = max(range(len(in_strides)), key=lambda i: in_strides[i])
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.multi_label = bool(multi_label)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels[self.level], num_classes)
        self.loss_weights = resolve_loss_weights(loss_weights, {"bce" if self.multi_label else "ce": 1.0}, "ClsHead")

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats`` (the neck's maps) -> logits ``[B, num_classes]``."""
        pooled = feats[self.level].mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))

    def loss(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Cross-entropy of the logits against ``batch['cls']`` (long ``[B]``); multi-label: binary
        cross-entropy per class against the multi-hot ``[B, C]``, averaged over images and classes."""
        target = batch["cls"]
        if self.multi_label:
            return {"bce": self._multi_label_loss(raw, target) * self.loss_weights["bce"]}
        if target.shape != raw.shape[:1]:
            hint = " (a multi-hot [B, C] target needs a head built with multi_label=True)" if target.dim() == 2 else ""
            raise ValueError(f"ClsHead.loss: batch['cls'] must be long [B] with B={raw.shape[0]}, "
                             f"got {tuple(target.shape)}{hint}")
        check_class_targets(target, self.num_classes, "ClsHead.loss batch['cls']")
        ce = F.cross_entropy(raw, target.long(), label_smoothing=self.label_smoothing)
        return {"ce": ce * self.loss_weights["ce"]}

    def _multi_label_loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != raw.shape:
            raise ValueError(f"ClsHead.loss (multi-label): batch['cls'] must be the multi-hot [B, C] = "
                             f"{tuple(raw.shape)}, got {tuple(target.shape)}; single-label class ids [B] need a "
                             f"head built with multi_label=False")
        target = target.float()
        if not bool(((target == 0) | (target == 1)).all()):
            bad = target[(target != 0) & (target != 1)][:5].tolist()
            raise ValueError(f"ClsHead.loss (multi-label): batch['cls'] must hold only 0 and 1, got {bad}")
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(raw.float(), target)

    @torch.no_grad()
    def predict(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Softmax probabilities, float ``[B, num_classes]`` (row ``i`` is image ``i``); multi-label: the
        sigmoid of each logit, the probability that the class is present."""
        return raw.float().sigmoid() if self.multi_label else raw.float().softmax(dim=1)

    def output_signature(self) -> dict:
        """What the raw output indexes, for the teacher/student compatibility check."""
        return {"head": "ClsHead", "output": "logits [B, C]", "num_classes": self.num_classes,
                "multi_label": self.multi_label}
