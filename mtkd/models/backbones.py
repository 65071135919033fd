"""Backbones: a timm wrapper and the small seed CNN, both returning a list of multi-scale feature maps.

Every backbone exposes ``out_channels`` and ``strides`` (one per returned map) so that necks and heads
can be built from them, like timm's ``feature_info``.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from mtkd.registry import MODELS


def load_weights(module: nn.Module, path: str | os.PathLike, allow_extra_keys: bool = True) -> None:
    """Load a local weights file into ``module`` with ``torch.load(weights_only=True)``.

    The file holds a state dict, or a dict with a ``state_dict``/``model`` entry. Every key of ``module``
    must be in the file with the same shape; extra keys (e.g. a classifier that ``features_only``
    dropped) are allowed when ``allow_extra_keys``. Any mismatch is a ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"backbone checkpoint {path} cannot be read as a torch weights file "
                         f"(torch.load weights_only=True): {type(err).__name__}: {err}") from err
    state = _unwrap_state_dict(loaded, path)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong_shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} keys missing from the file (e.g. {', '.join(missing[:5])})")
    if extra and not allow_extra_keys:
        problems.append(f"{len(extra)} unexpected keys in the file (e.g. {', '.join(extra[:5])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches (e.g. {'; '.join(wrong_shape[:3])})")
    if problems:
        raise ValueError(f"backbone checkpoint {path} does not match {type(module).__name__}: "
                         + "; ".join(problems))
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def _unwrap_state_dict(loaded: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"backbone checkpoint {path} holds no state dict (expected a dict of tensors, or "
                         f"one under 'state_dict' or 'model'), got {type(loaded).__name__}")
    return loaded


@MODELS.register_module()
class TimmBackbone(nn.Module):
    """Any timm model with ``features_only=True``: ``[B, 3, H, W]`` -> one map per ``out_indices``.

    ``pretrained`` is False by default (never download at run time); ``checkpoint`` names a local weights
    file for the timm model (a full classifier state dict of the same architecture is fine).
    """

    def __init__(self, name: str, out_indices: Sequence[int] = (1, 2, 3, 4), pretrained: bool = False,
                 checkpoint: str | None = None, **timm_kwargs):
        super().__init__()
        if not timm.is_model(name):
            close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5, cutoff=0.6)
            raise ValueError(f"TimmBackbone: unknown timm model name {name!r}"
                             + (f"; similar: {', '.join(close)}" if close else "; see timm.list_models()"))
        self.body = timm.create_model(name, pretrained=pretrained, features_only=True,
                                      out_indices=tuple(out_indices), **timm_kwargs)
        self.out_channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())
        if checkpoint is not None:
            load_weights(self.body, checkpoint)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


@MODELS.register_module()
class SeedConvNet(nn.Module):
    """The student CNN of the original classification recipe as a backbone: four Conv3x3-BN-ReLU-MaxPool2
    blocks (strides 2, 4, 8, 16); ``out_indices`` picks which block outputs are returned. Blocks after the
    last returned one are not built (they would hold parameters that never get a gradient, which DDP
    refuses and parameter counts would include).
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), out_indices: Sequence[int] = (1, 2, 3),
                 in_channels: int = 3, checkpoint: str | None = None):
        super().__init__()
        channels, out_indices = list(channels), list(out_indices)
        if not channels:
            raise ValueError("SeedConvNet: channels must list at least one block width, got []")
        bad = [i for i in out_indices if not 0 <= i < len(channels)]
        if bad or not out_indices or out_indices != sorted(set(out_indices)):
            raise ValueError(f"SeedConvNet: out_indices must be increasing block indices in "
                             f"[0, {len(channels) - 1}] (one per block of channels={channels}), got {out_indices}")
        widths = [in_channels, *channels[: out_indices[-1] + 1]]
        self.blocks = nn.ModuleList(_conv_block(c_in, c_out) for c_in, c_out in zip(widths[:-1], widths[1:]))
        self.out_indices = out_indices
        self.out_channels: list[int] = [channels[i] for i in out_indices]
        self.strides: list[int] = [2 ** (i + 1) for i in out_indices]
        if checkpoint is not None:
            load_weights(self, checkpoint)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.out_indices:
                outs.append(x)
        return outs


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    # ceil_mode keeps every stage at ceil(H / stride), the same sizes as timm's strided convs
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True))
