"""Necks: turn a backbone's maps into the maps the heads read (an FPN to a common width, or identity).

Every neck takes ``in_channels`` and ``in_strides`` (the backbone's) and exposes ``out_channels`` and
``strides``, one per output map, finest first.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from mtkd.registry import MODELS


def _check_levels(name: str, in_channels: Sequence[int], in_strides: Sequence[int]) -> None:
    if len(in_channels) != len(in_strides) or not in_channels:
        raise ValueError(f"{name}: in_channels {list(in_channels)} and in_strides {list(in_strides)} must be "
                         f"non-empty and of the same length (one per backbone output)")
    if list(in_strides) != sorted(set(in_strides)):
        raise ValueError(f"{name}: in_strides must increase strictly (finest map first), got {list(in_strides)}")


class StridedConvLevels(ExtraFPNBlock):
    """``num_levels`` extra FPN levels on top of the coarsest one, each a 3x3 stride-2 conv of the level
    below (RetinaNet's P6/P7, Lin et al. 2017, generalised to any count).
    """

    def __init__(self, channels: int, num_levels: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_levels))

    def forward(self, results: list[torch.Tensor], x: list[torch.Tensor], names: list[str]):
        results, names = list(results), list(names)
        for index, conv in enumerate(self.convs):
            source = results[-1] if index == 0 else F.relu(results[-1])
            results.append(conv(source))
            names.append(f"extra{index}")
        return results, names


@MODELS.register_module()
class FPN(nn.Module):
    """Feature Pyramid Network (Lin et al. 2017) via ``torchvision.ops.FeaturePyramidNetwork``.

    Maps ``[B, C_i, H/s_i, W/s_i]`` to ``out_channels`` at the same strides, plus ``num_extra_levels``
    stride-2 maps on top (strides ``2 * s_last``, ``4 * s_last``, ...).
    """

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], out_channels: int = 256,
                 num_extra_levels: int = 0):
        super().__init__()
        _check_levels("FPN", in_channels, in_strides)
        if num_extra_levels < 0:
            raise ValueError(f"FPN: num_extra_levels must be >= 0, got {num_extra_levels}")
        extra = StridedConvLevels(out_channels, num_extra_levels) if num_extra_levels else None
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=extra)
        self.strides: list[int] = [*in_strides, *(in_strides[-1] * 2 ** (i + 1) for i in range(num_extra_levels))]
        self.out_channels: list[int] = [out_channels] * len(self.strides)
        self.num_inputs = len(in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != self.num_inputs:
            raise ValueError(f"FPN expects {self.num_inputs} maps (strides {self.strides[:self.num_inputs]}), "
                             f"got {len(feats)}")
        return list(self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats))).values())


@MODELS.register_module()
class IdentityNeck(nn.Module):
    """Pass the backbone's maps through unchanged (for heads that read backbone features directly)."""

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int]):
        super().__init__()
        _check_levels("IdentityNeck", in_channels, in_strides)
        self.out_channels: list[int] = list(in_channels)
        self.strides: list[int] = list(in_strides)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(feats)
