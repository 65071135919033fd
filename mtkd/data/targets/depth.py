"""Depth ground truth: 16-bit PNG depth maps, metres = value * depth_scale, 0 = unknown."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mtkd.data.io import InvalidSampleError, image_header
from mtkd.data.targets.base import TargetReader
from mtkd.registry import TARGETS

DEPTH_PNG_MODES = ("I;16", "I;16B", "I;16L", "I")  # PIL's modes of a 16-bit single-channel PNG


@TARGETS.register_module()
class DepthTarget(TargetReader):
    """Float ``[H, W]`` depth in metres under ``depth``; 0 where the depth is unknown (ignored everywhere).

    Read from ``depth_dir/<image stem>.png``, a 16-bit single-channel PNG of ``depth / depth_scale``.
    ``depth_dir`` (relative to the data root) and ``depth_scale`` (metres per PNG unit) default to the
    json's top-level ``"depth_dir"`` and ``"depth_scale"``, as ``tools/make_synthetic.py`` writes them.
    Pixels the transforms leave without a source (padding) are 0 = unknown.
    """

    task = "depth"
    auto = True
    batch_keys = ("depth",)
    fill = 0.0
    requirement = ("a top-level 'depth_scale' (metres per PNG unit) and 'depth_dir' (16-bit PNGs named "
                   "<image stem>.png, relative to the data root), as tools/make_synthetic.py writes")

    def __init__(self, depth_dir: str | None = None, depth_scale: float | None = None):
        super().__init__()
        self.depth_dir_name, self.depth_scale = depth_dir, depth_scale
        self.depth_dir: Path | None = None

    @classmethod
    def available(cls, content: Mapping) -> bool:
        return "depth_scale" in content and "depth_dir" in content

    def setup(self, dataset: Any, name: str) -> None:
        super().setup(dataset, name)
        content = dataset.coco.dataset
        folder = self.depth_dir_name or content.get("depth_dir")
        scale = self.depth_scale if self.depth_scale is not None else content.get("depth_scale")
        if folder is None or scale is None:
            raise ValueError(f"annotation file {dataset.ann_file}: the {name} task needs {self.requirement}, or "
                             f"DepthTarget(depth_dir=..., depth_scale=...) in the dataset config")
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0):
            raise ValueError(f"annotation file {dataset.ann_file}: depth_scale must be a positive number "
                             f"(metres per PNG unit), got {scale!r}")
        self.depth_dir, self.depth_scale = dataset.data_root / folder, float(scale)

    def check(self, info: dict, anns: list[dict]) -> None:
        path = self._path(info)
        size, mode = image_header(path, "depth map")
        if mode not in DEPTH_PNG_MODES:
            raise InvalidSampleError(f"bad depth map: {path} has mode {mode}, expected a 16-bit single-channel PNG")
        if size != (info["height"], info["width"]):
            raise InvalidSampleError(f"depth map of the wrong size: {path} is {size[1]}x{size[0]}, image id "
                                     f"{info['id']} in {self.dataset.ann_file} is {info['width']}x{info['height']}")

    def read(self, info: dict, anns: list[dict]) -> dict[str, np.ndarray]:
        path = self._path(info)
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
            what = "cannot be decoded" if raw is None else f"is {raw.dtype} with shape {raw.shape}"
            raise InvalidSampleError(f"bad depth map: {path} {what}; expected a 16-bit single-channel PNG")
        return {"dense": raw.astype(np.float32) * np.float32(self.depth_scale)}

    def to_sample(self, info: dict, objects: list[dict], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"depth": torch.from_numpy(np.ascontiguousarray(out["dense"][self.name])).float()}

    def _path(self, info: dict) -> Path:
        return self.depth_dir / (Path(info["file_name"]).stem + ".png")
