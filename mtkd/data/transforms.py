"""Data pipelines from config: albumentations transforms registered in TRANSFORMS under their own names.

A pipeline is a list of dicts, e.g. ``[dict(type="HorizontalFlip", p=0.5), dict(type="Resize", height=128,
width=128), dict(type="Normalize")]``; compositions nest (``dict(type="OneOf", transforms=[...])``).
:class:`Pipeline` keeps image, mask and boxes consistent (``BboxParams(format="pascal_voc")``) and reports
the exact mapping from original to input pixels by carrying two reference keypoints through the transforms.
That mapping is exact for resizing, padding, cropping and flips (the evaluation pipelines); rotations and
shears (train pipelines) leave it approximate.
"""
from __future__ import annotations

import inspect
import warnings
import zlib
from collections.abc import Mapping, Sequence

import albumentations as A
import numpy as np

from mtkd.registry import TRANSFORMS

for _name, _obj in vars(A).items():
    if inspect.isclass(_obj) and issubclass(_obj, (A.BasicTransform, A.BaseCompose)) and not _name.startswith("_"):
        TRANSFORMS.register_module(name=_name, module=_obj)


@TRANSFORMS.register_module(force=True)
class HorizontalFlip(A.HorizontalFlip):
    """albumentations' HorizontalFlip, with keypoints in the boxes' convention ``x -> W - x``.

    albumentations flips keypoints as pixel indices (``W - 1 - x``) but boxes as coordinates (``W - x``);
    the pipeline measures its mapping with keypoints, so they must move like the boxes.
    """

    def apply_to_keypoints(self, keypoints: np.ndarray, **params) -> np.ndarray:
        flipped = super().apply_to_keypoints(keypoints, **params)
        flipped[:, 0] += 1.0
        return flipped


@TRANSFORMS.register_module(force=True)
class VerticalFlip(A.VerticalFlip):
    """albumentations' VerticalFlip, with keypoints in the boxes' convention ``y -> H - y``."""

    def apply_to_keypoints(self, keypoints: np.ndarray, **params) -> np.ndarray:
        flipped = super().apply_to_keypoints(keypoints, **params)
        flipped[:, 1] += 1.0
        return flipped


def build_transform(cfg: Mapping):
    """One albumentations transform from ``dict(type=..., **kwargs)``; nested ``transforms`` are built too."""
    cfg = dict(cfg)
    if "transforms" in cfg:
        cfg["transforms"] = [build_transform(c) for c in cfg["transforms"]]
    return TRANSFORMS.build(cfg)


def sample_seed(base_seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample: a function of (seed, epoch, index) only, so workers, resumes
    and reruns draw the same augmentations."""
    return zlib.crc32(np.array([base_seed, epoch, index], dtype=np.int64).tobytes())


class Pipeline:
    """Runs a list of transforms on an RGB ``uint8 [H, W, 3]`` image with optional mask and boxes.

    Returns the transformed arrays and the mapping ``input_xy = original_xy * scale + offset`` (per axis),
    applied after mirroring the original when ``flip`` (horizontal) or ``vflip`` (vertical) is set; it is
    measured on the image corners ``(0, 0)`` and ``(W, H)`` carried through the same transforms as keypoints.
    """

    def __init__(self, transforms: Sequence[Mapping], min_visibility: float = 0.0, min_area: float = 1.0):
        self.cfgs = [dict(t) for t in transforms]
        with warnings.catch_warnings():  # a pipeline without geometric steps is fine: boxes pass through
            warnings.filterwarnings("ignore", message="Got processor for", category=UserWarning)
            self.compose = self._compose(min_visibility, min_area)

    def _compose(self, min_visibility: float, min_area: float) -> A.Compose:
        return A.Compose(
            [build_transform(t) for t in self.cfgs],
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=min_visibility,
                                     min_area=min_area, clip=True),
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
            seed=0,
        )

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None, boxes: np.ndarray | None = None,
                 labels: np.ndarray | None = None, seed: int | None = None) -> dict:
        height, width = image.shape[:2]
        if seed is not None:
            self.compose.set_random_seed(seed)
        data = {"image": image, "keypoints": np.array([[0.0, 0.0], [float(width), float(height)]]),
                "bboxes": np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32),
                "labels": np.zeros((0,), np.int64) if labels is None else np.asarray(labels, np.int64)}
        if mask is not None:
            data["mask"] = mask
        out = self.compose(**data)
        (x0, y0), (x1, y1) = np.asarray(out["keypoints"], np.float64)[:2]
        scale = ((x1 - x0) / width, (y1 - y0) / height)
        return {
            "image": out["image"],
            "mask": out.get("mask"),
            "boxes": np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
            "labels": np.asarray(out["labels"], np.int64).reshape(-1),
            "scale_factor": (float(abs(scale[0])), float(abs(scale[1]))),
            "offset": (float(min(x0, x1)), float(min(y0, y1))),
            "flip": bool(scale[0] < 0),
            "vflip": bool(scale[1] < 0),
        }

    def normalization(self) -> tuple[tuple, tuple]:
        """Mean and std of the pipeline's Normalize step (for drawing images back)."""
        for cfg in self.cfgs:
            if cfg.get("type") == "Normalize":
                norm = A.Normalize(**{k: v for k, v in cfg.items() if k != "type"})
                return tuple(float(v) for v in np.ravel(norm.mean)), tuple(float(v) for v in np.ravel(norm.std))
        return (0.0, 0.0, 0.0), (1.0 / 255, 1.0 / 255, 1.0 / 255)
