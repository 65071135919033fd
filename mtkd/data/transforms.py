"""Data pipelines from config: albumentations transforms registered in TRANSFORMS under their own names.

A pipeline is a list of dicts, e.g. ``[dict(type="HorizontalFlip", p=0.5), dict(type="Resize", height=128,
width=128), dict(type="Normalize")]``; compositions nest (``dict(type="OneOf", transforms=[...])``).
:class:`Pipeline` keeps the image and every target consistent (dense maps, boxes, keypoints) and reports
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
    """Runs a list of transforms on an RGB ``uint8 [H, W, 3]`` image and any targets, kept consistent.

    Targets go through albumentations' own target types: every dense map (an integer label map such as a
    semantic mask, or a float map such as depth or normals, ``[H, W]`` or ``[H, W, C]``) as a ``mask``
    (``additional_targets``, nearest interpolation), the boxes as ``bboxes`` (``pascal_voc``, with their
    indices as the label field, so that a reader can gather per-box attributes after filtering), every
    keypoint set as ``keypoints`` (never dropped: out-of-image points keep their coordinates).

    Each dense map has its own ``fill``: where the transforms leave no source pixel (padding, the
    outside of a rotation or crop, dropout holes) it holds that value (255 = ignore for label maps,
    0 = unknown for depth), whatever ``fill_mask`` the transforms use. Those pixels are found with two
    constant marker maps carried through the same transforms.

    The call also returns the mapping ``input_xy = original_xy * scale + offset`` (per axis), applied
    after mirroring the original when ``flip`` (horizontal) or ``vflip`` (vertical) is set; it is measured
    on the image corners ``(0, 0)`` and ``(W, H)`` carried through the same transforms as keypoints.
    """

    def __init__(self, transforms: Sequence[Mapping], min_visibility: float = 0.0, min_area: float = 1.0,
                 dense_fills: Mapping[str, float] | None = None):
        self.cfgs = [dict(t) for t in transforms]
        self.dense_fills = {str(k): float(v) for k, v in (dense_fills or {}).items()}
        clash = sorted(set(self.dense_fills) & {"image", "mask", "bboxes", "keypoints", *_MARKERS})
        if clash:
            raise ValueError(f"Pipeline: dense target names {clash} are reserved by albumentations or the pipeline")
        if self.dense_fills:
            _check_nearest(self.cfgs)
        with warnings.catch_warnings():  # a pipeline without geometric steps is fine: boxes pass through
            warnings.filterwarnings("ignore", message="Got processor for", category=UserWarning)
            self.compose = self._compose(min_visibility, min_area)

    def _compose(self, min_visibility: float, min_area: float) -> A.Compose:
        targets = {name: "mask" for name in [*self.dense_fills, *(_MARKERS if self.dense_fills else ())]}
        return A.Compose(
            [build_transform(t) for t in self.cfgs],
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["box_ids"], min_visibility=min_visibility,
                                     min_area=min_area, clip=True),
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
            additional_targets=targets,
            seed=0,
        )

    def __call__(self, image: np.ndarray, dense: Mapping[str, np.ndarray] | None = None,
                 boxes: np.ndarray | None = None, keypoints: Mapping[str, np.ndarray] | None = None,
                 seed: int | None = None) -> dict:
        """Transform ``image`` with ``dense`` maps (by name, as declared), xyxy ``boxes [N, 4]`` and
        ``keypoints`` sets (by name, xy ``[P, 2]``); returns them under the same names plus ``box_ids``
        (indices of the boxes kept) and the input mapping (``scale_factor``, ``offset``, ``flip``, ``vflip``)."""
        dense, keypoints = dict(dense or {}), dict(keypoints or {})
        unknown = sorted(set(dense) - set(self.dense_fills))
        if unknown:
            raise KeyError(f"Pipeline: dense targets {unknown} were not declared (declared: {sorted(self.dense_fills)})")
        height, width = image.shape[:2]
        if seed is not None:
            self.compose.set_random_seed(seed)
        points = [np.array([[0.0, 0.0], [float(width), float(height)]])]
        points += [np.asarray(keypoints[name], np.float64).reshape(-1, 2) for name in keypoints]
        boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        data = {"image": image, "keypoints": np.concatenate(points), "bboxes": boxes,
                "box_ids": np.arange(len(boxes), dtype=np.int64), **dense}
        if self.dense_fills:
            data.update({name: np.full((height, width), value, np.uint8) for name, value in _MARKERS.items()})
        out = self.compose(**data)
        return {"image": out["image"], "dense": self._dense_out(out, dense),
                "boxes": np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
                "box_ids": np.asarray(out["box_ids"], np.int64).reshape(-1),
                "keypoints": _split_points(np.asarray(out["keypoints"], np.float64), keypoints),
                **_mapping(np.asarray(out["keypoints"], np.float64)[:2], width, height)}

    def _dense_out(self, out: Mapping, given: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each transformed dense map with its own ``fill`` where no source pixel landed."""
        if not given:
            return {}
        filled = np.zeros(out["image"].shape[:2], bool)
        for name, value in _MARKERS.items():
            filled |= out[name] != value
        result = {}
        for name in given:
            values = np.array(out[name], copy=True)
            values[filled] = self.dense_fills[name]
            result[name] = values
        return result

    def normalization(self) -> tuple[tuple, tuple]:
        """Mean and std of the pipeline's Normalize step (for drawing images back)."""
        for cfg in self.cfgs:
            if cfg.get("type") == "Normalize":
                norm = A.Normalize(**{k: v for k, v in cfg.items() if k != "type"})
                return tuple(float(v) for v in np.ravel(norm.mean)), tuple(float(v) for v in np.ravel(norm.std))
        return (0.0, 0.0, 0.0), (1.0 / 255, 1.0 / 255, 1.0 / 255)


# Two constant maps carried as masks: a pixel whose markers are not (1, 2) received a transform's fill_mask
# (whatever its value: it cannot equal both), so it is set to each dense target's own fill.
_MARKERS = {"_marker_a": 1, "_marker_b": 2}
NEAREST = (0, 6)  # cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT


def _check_nearest(cfgs: Sequence[Mapping]) -> None:
    """Dense targets (label maps above all) must be resampled by nearest neighbour to stay exact."""
    for cfg in cfgs:
        value = cfg.get("mask_interpolation", 0)
        if value not in NEAREST:
            raise ValueError(f"Pipeline: {cfg.get('type')} has mask_interpolation={value}; dense targets (label "
                             f"maps, depth with 0 = unknown) need nearest (0), or values would be mixed")
        for child in cfg.get("transforms", ()):
            _check_nearest([child])


def _split_points(points: np.ndarray, given: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The transformed keypoints back into their named sets (the first two rows are the corners)."""
    result, start = {}, 2
    for name, value in given.items():
        count = len(np.asarray(value).reshape(-1, 2))
        result[name] = points[start:start + count, :2].astype(np.float32)
        start += count
    if start != len(points):
        raise RuntimeError(f"Pipeline: {len(points)} keypoints came back for {start} given; a transform dropped some")
    return result


def _mapping(corners: np.ndarray, width: int, height: int) -> dict:
    """``scale_factor``, ``offset``, ``flip``, ``vflip`` from where the corners ``(0, 0)``, ``(W, H)`` went."""
    (x0, y0), (x1, y1) = corners[:, :2]
    scale = ((x1 - x0) / width, (y1 - y0) / height)
    return {"scale_factor": (float(abs(scale[0])), float(abs(scale[1]))),
            "offset": (float(min(x0, x1)), float(min(y0, y1))),
            "flip": bool(scale[0] < 0), "vflip": bool(scale[1] < 0)}
