"""The contracts between data, models, losses and metrics (see DESIGN.md "Contracts").

Batch (what the data loader yields; a task's keys are absent when the dataset has no labels for it):
    img     float [B, 3, H, W], normalized
    seg     long  [B, H, W], class per pixel, IGNORE_INDEX = ignore
    boxes   list of B float [Ni, 4], xyxy in input pixels
    labels  list of B long [Ni]
    cls     long  [B]
    meta    list of B dicts: image_id, file_name, ori_size (H, W), img_size (h, w),
            scale_factor (sx, sy) and offset (ox, oy) with input = original * scale + offset, where the
            original is first mirrored (x -> W - x) when flip and (y -> H - y) when vflip

Model output (``model(img)`` in train and eval mode alike; keys are the configured tasks):
    seg     logits [B, Cs, h, w] at any stride
    det     raw dense predictions [B, N, 5 + Cd] over all points of all levels, level by level:
            [..., :4] box regression, [..., 4] objectness logit, [..., 5:] class logits
    cls     logits [B, Cc]
    feats   optional list of neck feature maps, for feature distillation
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

IGNORE_INDEX = 255
FEATS_KEY = "feats"
META_KEY = "meta"
IMG_KEY = "img"

# Which batch keys hold a task's ground truth. Heads declare their own (``Head.batch_keys``); this table
# is what the three built-in tasks use, for datasets and collate.
TASK_BATCH_KEYS: dict[str, tuple[str, ...]] = {
    "seg": ("seg",),
    "det": ("boxes", "labels"),
    "cls": ("cls",),
}


def has_labels(batch: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    """True when every key of a task's ground truth is present in the batch."""
    return all(key in batch for key in keys)


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; metadata stays where it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: v if k == META_KEY else to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch
