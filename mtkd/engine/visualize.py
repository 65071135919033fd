"""Draw predictions on images (TensorBoard, ``tools/test.py --show-dir``, ``tools/predict.py``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def _palette(n: int) -> list[tuple[int, int, int]]:
    gen = torch.Generator().manual_seed(7)
    colours = torch.randint(40, 256, (max(n, 1), 3), generator=gen)
    return [tuple(int(c) for c in row) for row in colours]


def draw_prediction(image: torch.Tensor, pred: Mapping[str, object],
                    class_names: Mapping[str, Sequence[str]] | None = None,
                    score_thr: float = 0.3) -> torch.Tensor:
    """Overlay one image's predictions (``{"seg": [H,W], "det": {...}, "cls": [C]}``) on uint8 ``[3,H,W]``."""
    names = class_names or {}
    out = image
    seg = pred.get("seg")
    if isinstance(seg, torch.Tensor):
        seg = seg.cpu()
        classes = [int(c) for c in seg.unique() if 0 < int(c) < 255]  # 0 is background
        if classes:
            masks = torch.stack([seg == c for c in classes])
            palette = _palette(int(seg.max()) + 1)
            out = draw_segmentation_masks(out, masks, alpha=0.45, colors=[palette[c] for c in classes])
    det = pred.get("det")
    if isinstance(det, Mapping) and len(det["boxes"]):
        keep = det["scores"].cpu() >= score_thr
        boxes, labels, scores = det["boxes"].cpu()[keep], det["labels"].cpu()[keep], det["scores"].cpu()[keep]
        det_names = names.get("det")
        text = [f"{det_names[int(l)] if det_names else int(l)} {float(s):.2f}" for l, s in zip(labels, scores)]
        if len(boxes):
            palette = _palette(max(int(labels.max()) + 1, 1))
            out = draw_bounding_boxes(out, boxes, labels=text, colors=[palette[int(l)] for l in labels], width=1)
    return out


def top_class(probs: torch.Tensor, names: Sequence[str] | None) -> tuple[str, float]:
    """The most likely class of ``probs [C]`` as (name, probability)."""
    prob, index = probs.max(dim=0)
    name = names[int(index)] if names else str(int(index))
    return name, float(prob)


def save_png(image: torch.Tensor, path) -> None:
    """Write a uint8 ``[3, H, W]`` image as PNG (PIL; torchvision's image IO is deprecated)."""
    from PIL import Image
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path)
