"""The contracts between data, models, losses, metrics and drawings (see DESIGN.md "Contracts").

Batch (what the data loader yields; a task's keys are absent when the dataset has no labels for it):
    img     float [B, 3, H, W], normalized
    meta    list of B dicts: image_id, file_name, ori_size (H, W), img_size (h, w),
            scale_factor (sx, sy) and offset (ox, oy) with input = original * scale + offset, where the
            original is first mirrored (x -> W - x) when flip and (y -> H - y) when vflip
    + each task's ground truth under its head's ``batch_keys``; the built-in tasks:
    seg     long  [B, H, W], class per pixel, IGNORE_INDEX = ignore
    boxes   list of B float [Ni, 4], xyxy in input pixels; labels: list of B long [Ni]   (task det)
    cls     long  [B]; or float [B, C] multi-hot when the data is multi-label (``image_labels="instances"``)
    depth   float [B, H, W], metres, 0 = unknown

Model output (``model(img)`` in train and eval mode alike; keys are the configured tasks):
    <task>  one tensor per task, its head's raw output (what soft losses compare); built in:
    seg     logits [B, Cs, h, w] at any stride (its predict gives per-image logits [Cs, h, w]: the argmax is
            taken after resizing them to where they are compared or drawn, see ``class_map``)
    det     raw dense predictions [B, N, 5 + Cd] over all points of all levels, level by level:
            [..., :4] box regression, [..., 4] objectness logit, [..., 5:] class logits
    cls     logits [B, Cc] (a softmax over classes; independent sigmoids when multi-label)
    depth   log-depth [B, 1, h, w] at any stride
    feats   optional list of neck feature maps, for feature distillation

A task (built in: seg, det, cls, depth; a user's own one lives in the user's module, named by the
config's ``custom_imports``) is five registered parts, none of which the engine, the Distiller or the
tools name:
    head     (MODELS) an ``nn.Module`` built with ``in_channels``/``in_strides`` of the neck (and
             ``num_classes`` from the data when its constructor takes it):
             ``forward(feats) -> Tensor`` (the raw output: exactly one tensor, checked at build time),
             ``loss(raw, batch) -> {term: Tensor}`` (hard losses, already weighted),
             ``predict(raw, batch) -> per-image results`` (indexable by image: a list or a [B, ...] tensor),
             ``batch_keys`` (the batch keys of its ground truth), ``output_signature() -> dict`` (what
             teacher and student must agree on), optional ``num_classes``.
    target   (TARGETS) a ``mtkd.data.targets.TargetReader``: reads the ground truth from the dataset
             (``read``), says how it travels through the pipeline (a dense map with its ``fill``, boxes,
             keypoints) and turns the transformed result into the sample's ``batch_keys`` (``to_sample``);
             ``listed_keys`` are collated as per-image lists, the rest stacked.
    metric   (METRICS) built as ``METRICS.build(cfg, task=..., dataset=...)``: ``reset()``,
             ``update(preds, batch)``, ``compute() -> {"<task>/<name>": float}`` (gathered over DDP
             ranks), ``summary() -> str``, ``primary`` (the key, higher is better, that picks best.pth).
    soft     (MODELS) ``loss(student_raw, teacher_raw[, target]) -> scalar``, ``needs_target`` when it
             reads the ground truth (the head's batch key, or a dict of them).
    drawer   (DRAWERS) ``draw(image, pred)`` and ``draw_target(image, sample)`` on uint8 ``[3, H, W]``,
             ``describe(pred) -> str | None`` (a line for ``tools/predict.py``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
FEATS_KEY = "feats"
TOWERS_KEY = "towers"   # MultiTaskModel.forward(towers=...): {task: head.forward_tower(feats)}
META_KEY = "meta"
IMG_KEY = "img"


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


def map_to_original(maps: torch.Tensor, meta: Mapping[str, Any], mode: str = "bilinear") -> torch.Tensor:
    """Resample maps over the network input ``[C, h, w]`` onto the original image ``[C, H, W]``.

    Each original pixel centre is mirrored (``flip``/``vflip``), mapped by ``input = original * scale +
    offset`` and the input map is sampled there (``grid_sample``, align_corners=False: pixel ``i`` spans
    ``[i, i + 1]``), so resizing, letterboxing, cropping and flips are undone exactly; ``maps`` may be at any
    stride of the input (``img_size`` in ``meta``). Points outside the input take the nearest border value.
    """
    height, width = (int(v) for v in meta["ori_size"])
    in_h, in_w = (float(v) for v in meta.get("img_size", maps.shape[-2:]))
    (sx, sy), (ox, oy) = meta["scale_factor"], meta["offset"]
    xs = torch.arange(width, dtype=torch.float64) + 0.5
    ys = torch.arange(height, dtype=torch.float64) + 0.5
    if meta.get("flip", False):
        xs = width - xs
    if meta.get("vflip", False):
        ys = height - ys
    gx = (xs * float(sx) + float(ox)) / in_w * 2 - 1      # input pixels -> [-1, 1] over the input
    gy = (ys * float(sy) + float(oy)) / in_h * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)   # [H, W, 2] as (x, y)
    grid = grid.to(device=maps.device, dtype=maps.dtype if maps.is_floating_point() else torch.float32)
    source = maps if maps.is_floating_point() else maps.float()
    out = F.grid_sample(source[None], grid[None], mode=mode, padding_mode="border", align_corners=False)[0]
    return out if maps.is_floating_point() else out.round().to(maps.dtype)


def class_map(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel classes at ``size`` (H, W): class scores ``[C, h, w]`` (or ``[B, C, h, w]``) resized bilinearly,
    then the argmax over C -> long ``[H, W]`` (``[B, H, W]``). Resizing the scores before the argmax is what
    mmseg does; an integer map (already classes) is resized by nearest neighbour instead."""
    if not scores.is_floating_point():
        batched = scores if scores.dim() == 3 else scores[None]
        out = F.interpolate(batched[:, None].float(), size=tuple(size), mode="nearest")[:, 0].to(scores.dtype)
        return out if scores.dim() == 3 else out[0]
    batched = scores if scores.dim() == 4 else scores[None]
    if tuple(batched.shape[-2:]) != tuple(size):
        batched = F.interpolate(batched, size=tuple(size), mode="bilinear", align_corners=False)
    classes = batched.argmax(dim=1)
    return classes if scores.dim() == 4 else classes[0]
