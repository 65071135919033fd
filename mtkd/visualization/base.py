"""What every drawing shares: images back from the network input, colours, text, and the drawers of a config.

A drawer (registered in DRAWERS, one per task) draws that task's prediction (``draw``) or ground truth
(``draw_target``, scaled from the sample's input size to the image's, so an enlarged image works) on a
uint8 ``[3, H, W]`` image and may describe a prediction in one line (``describe``, printed by
``tools/predict.py``). A drawer with ``panel = True`` draws on a blank copy that is put next to
the image instead of over it (a depth map would hide the scene).
"""
from __future__ import annotations

import inspect

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from mtkd.registry import DRAWERS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Drawer:
    """Base of the drawers: holds the task, its class names, whether it draws as its own panel."""

    panel = False

    def __init__(self, task: str, class_names: Sequence[str] | None = None):
        self.task = task
        self.class_names = list(class_names) if class_names is not None else None

    def name(self, index: int) -> str:
        """Class ``index`` by name when the names are known, else the number."""
        names = self.class_names
        return names[index] if names is not None and 0 <= index < len(names) else str(index)

    def draw(self, image: torch.Tensor, pred: Any) -> torch.Tensor:
        raise NotImplementedError

    def draw_target(self, image: torch.Tensor, sample: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def describe(self, pred: Any) -> str | None:
        """One line about a prediction for text output (None: nothing to say)."""
        return None


def fit_to(values: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A map ``[H, W]`` resized (nearest) to the image's ``[h, w]``, e.g. labels drawn on an enlarged image."""
    size = tuple(image.shape[-2:])
    if tuple(values.shape[-2:]) == size:
        return values
    resized = torch.nn.functional.interpolate(values[None, None].float(), size=size, mode="nearest")[0, 0]
    return resized.to(values.dtype)


def image_scale(image: torch.Tensor, sample: Mapping[str, Any]) -> tuple[float, float]:
    """``(sx, sy)`` from the sample's network input (``sample["img"]``) to ``image`` (1 when it has none)."""
    if "img" not in sample:
        return 1.0, 1.0
    height, width = sample["img"].shape[-2:]
    return image.shape[-1] / width, image.shape[-2] / height


def build_drawers(cfgs: Mapping[str, Mapping] | None, tasks: Sequence[str],
                  class_names: Mapping[str, Sequence[str]] | None = None,
                  head_args: Mapping[str, Mapping] | None = None) -> dict[str, Drawer]:
    """``{task: drawer}`` for the tasks that ``cfgs`` (the config's ``drawers``) has an entry for; what the
    data decided about a task's head (``head_args``, e.g. ``multi_label``) goes to drawers that take it."""
    names, drawers = class_names or {}, {}
    for task in (t for t in tasks if t in (cfgs or {})):
        cfg = dict(cfgs[task])
        drawer_type = DRAWERS.get(cfg["type"]) if isinstance(cfg.get("type"), str) and cfg["type"] in DRAWERS \
            else cfg.get("type")
        params = inspect.signature(drawer_type).parameters if isinstance(drawer_type, type) else {}
        for key, value in dict((head_args or {}).get(task) or {}).items():
            if key in params and cfg.get(key) is None:
                cfg[key] = value
        drawers[task] = DRAWERS.build(cfg, task=task, class_names=names.get(task))
    return drawers


def draw_prediction(image: torch.Tensor, pred: Mapping[str, Any], drawers: Mapping[str, Drawer]) -> torch.Tensor:
    """Every task's prediction of one image drawn over (or, panels, next to) uint8 ``[3, H, W]``."""
    return _compose(image, {task: (d, pred[task]) for task, d in drawers.items() if task in pred}, False)


def draw_target(image: torch.Tensor, sample: Mapping[str, Any], drawers: Mapping[str, Drawer],
                tasks: Sequence[str]) -> torch.Tensor:
    """Every task's ground truth in ``sample`` (one image's batch entries) drawn like :func:`draw_prediction`."""
    return _compose(image, {task: (d, sample) for task, d in drawers.items() if task in tasks}, True)


def _compose(image: torch.Tensor, items: Mapping[str, tuple[Drawer, Any]], target: bool) -> torch.Tensor:
    out, panels = image, []
    for drawer, value in items.values():
        canvas = torch.zeros_like(image) if drawer.panel else out
        drawn = drawer.draw_target(canvas, value) if target else drawer.draw(canvas, value)
        if drawer.panel:
            panels.append(drawn)
        else:
            out = drawn
    return torch.cat([out, *panels], dim=2) if panels else out


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """One fixed, well-spread colour per class index (HSV hue wheel, golden-ratio steps)."""
    colours = []
    for k in range(max(count, 1)):
        hue = (k * 0.618034) % 1.0
        rgb = [max(0.0, min(1.0, abs((hue * 6 + shift) % 6 - 3) - 1)) for shift in (0, 4, 2)]
        colours.append(tuple(int(60 + 195 * c) for c in rgb))
    return colours


def draw_text(image: torch.Tensor, text: str, row: int = 0) -> torch.Tensor:
    """``text`` in white on a dark strip at the top-left (line ``row``) of uint8 ``[3, H, W]``."""
    canvas = Image.fromarray(image.permute(1, 2, 0).contiguous().cpu().numpy())
    pen = ImageDraw.Draw(canvas)
    left, top, right, bottom = pen.textbbox((2, 1 + 12 * row), text)
    pen.rectangle((0, top - 1, right + 2, bottom + 1), fill=(20, 20, 20))
    pen.text((2, 1 + 12 * row), text, fill=(255, 255, 255))
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def find_normalize(pipeline: Sequence[Mapping] | None) -> tuple[tuple, tuple]:
    """Mean and std of the pipeline's ``Normalize`` step (albumentations' defaults when it has none)."""
    for step in pipeline or ():
        if step.get("type") == "Normalize":
            return tuple(step.get("mean", IMAGENET_MEAN)), tuple(step.get("std", IMAGENET_STD))
    return IMAGENET_MEAN, IMAGENET_STD


def denormalize(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalized float ``[3, H, W]`` -> uint8 ``[3, H, W]``."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    pixels = (img.detach().float().cpu() * std_t + mean_t) * 255.0
    return pixels.clamp(0, 255).round().to(torch.uint8)


def save_png(image: torch.Tensor, path) -> None:
    """Write a uint8 ``[3, H, W]`` image as PNG (PIL; torchvision's image IO is deprecated)."""
    Image.fromarray(image.permute(1, 2, 0).contiguous().cpu().numpy()).save(path)
