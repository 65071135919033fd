"""What the task heads share: reading the input size from a batch, checking class targets, loss weights,
the Semantic-FPN fusion of the dense heads (seg, depth).

A head is an ``nn.Module`` with ``forward(feats) -> raw``, ``loss(raw, batch) -> {name: Tensor}`` (terms
already multiplied by their weight), ``predict(raw, batch) -> list`` (one item per image),
``batch_keys`` (the batch keys of its ground truth), ``num_classes`` and ``output_signature()``.

A head may also declare where its towers end and its prediction layers begin (CrossKD, ``mtkd.distill.crosskd``
uses it): ``forward_tower(feats) -> {branch: [maps [B, C_branch, h, w] per level]}``, ``forward_pred(tower)
-> raw`` with ``forward(feats) == forward_pred(forward_tower(feats))``, and ``tower_channels() -> {branch:
C_branch}``. :func:`has_split` says whether a head declares it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.structures import IMG_KEY


SPLIT_MEMBERS = ("forward_tower", "forward_pred", "tower_channels")


def has_split(head: nn.Module) -> bool:
    """Whether ``head`` declares its tower / prediction-layer split (every one of ``SPLIT_MEMBERS``)."""
    return all(callable(getattr(head, name, None)) for name in SPLIT_MEMBERS)


def input_hw(batch: Mapping[str, Any]) -> tuple[int, int]:
    """The network input size ``(H, W)``: the shape of ``batch['img']`` ``[B, 3, H, W]``."""
    if IMG_KEY not in batch:
        raise KeyError(f"the batch has no {IMG_KEY!r} key (keys: {sorted(batch)}); heads read the input size "
                       f"from it to return results in input-image pixels")
    return tuple(batch[IMG_KEY].shape[-2:])


def check_class_targets(target: torch.Tensor, num_classes: int, where: str, ignore_index: int | None = None) -> None:
    """Raise a ValueError when a class target lies outside ``[0, num_classes)`` (``ignore_index`` allowed)."""
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid |= target == ignore_index
    if not bool(valid.all()):
        bad = torch.unique(target[~valid])[:10].tolist()
        allowed = f"[0, {num_classes - 1}]" + (f" or {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"{where}: class ids {bad} are outside {allowed} (the head has {num_classes} classes)")


def resolve_loss_weights(given: Mapping[str, float] | None, defaults: Mapping[str, float], owner: str) -> dict:
    """Defaults updated by ``given``; a name the head does not compute is an error listing the known ones."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{owner}: loss_weights has unknown terms {unknown}; known: {sorted(defaults)}")
    return {**defaults, **{k: float(v) for k, v in given.items()}}


def conv_norm_act(c_in: int, c_out: int, kernel: int = 3, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv(kernel, same padding, no bias) -> BatchNorm -> activation."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), act(inplace=True))


def fpn_branches(in_channels: Sequence[int], in_strides: Sequence[int], channels: int, out_stride: int,
                 owner: str) -> tuple[list[int], nn.ModuleList]:
    """Semantic FPN (Kirillov et al. 2019) branches: the levels with stride >= ``out_stride`` and, per level,
    conv3x3-BN-ReLU (+ 2x upsampling) stages down to ``out_stride``; fuse with :func:`fuse_branches`."""
    levels = [i for i, s in enumerate(in_strides) if s >= out_stride]
    if not levels:
        raise ValueError(f"{owner}: no input level has stride >= out_stride={out_stride} "
                         f"(neck strides {list(in_strides)})")
    return levels, nn.ModuleList(
        _fpn_branch(in_channels[i], channels, in_strides[i], out_stride, owner) for i in levels)


def _fpn_branch(c_in: int, channels: int, stride: int, out_stride: int, owner: str) -> nn.Sequential:
    num_up = int(round(math.log2(stride / out_stride)))
    if 2 ** num_up * out_stride != stride:
        raise ValueError(f"{owner}: stride {stride} is not out_stride={out_stride} times a power of 2")
    stages: list[nn.Module] = []
    for k in range(max(num_up, 1)):
        stages.append(conv_norm_act(c_in if k == 0 else channels, channels))
        if num_up:
            stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*stages)


def fuse_branches(feats: Sequence[torch.Tensor], levels: Sequence[int], branches: nn.ModuleList) -> torch.Tensor:
    """Sum of the branches' outputs ``[B, channels, H/out_stride, W/out_stride]`` (resized to the first's)."""
    outs = [branch(feats[i]) for i, branch in zip(levels, branches)]
    size = outs[0].shape[-2:]
    fused = outs[0]
    for out in outs[1:]:
        fused = fused + (out if out.shape[-2:] == size else
                         F.interpolate(out, size=size, mode="bilinear", align_corners=False))
    return fused
