"""What the task heads share: reading the input size from a batch, checking class targets, loss weights.

A head is an ``nn.Module`` with ``forward(feats) -> raw``, ``loss(raw, batch) -> {name: Tensor}`` (terms
already multiplied by their weight), ``predict(raw, batch) -> list`` (one item per image),
``batch_keys`` (the batch keys of its ground truth), ``num_classes`` and ``output_signature()``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mtkd.structures import IMG_KEY


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
