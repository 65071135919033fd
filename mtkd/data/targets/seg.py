"""Semantic segmentation ground truth: a class per pixel, from instance masks or PNG label maps."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mtkd.data.io import InvalidSampleError, image_size
from mtkd.data.targets.base import TargetReader
from mtkd.registry import TARGETS
from mtkd.structures import IGNORE_INDEX


@TARGETS.register_module()
class SemanticMaskTarget(TargetReader):
    """Long ``[H, W]`` class map under ``seg``: 0 background, category k -> k + 1, ``IGNORE_INDEX`` ignored.

    Painted from the annotations' masks (polygon or RLE) in annotation order, later ones over earlier
    ones, crowd regions ignored; or, with ``mask_dir`` (relative to the data root), read from
    ``mask_dir/<image stem>.png`` (mode L or P) holding those indices. Padding is ignore.
    """

    task = "seg"
    auto = True
    batch_keys = ("seg",)
    fill = float(IGNORE_INDEX)
    requirement = "a 'segmentation' (polygon or RLE) on every annotation, or mask_dir=... with PNG label maps"

    def __init__(self, mask_dir: str | None = None):
        super().__init__()
        self.mask_dir_name = mask_dir
        self.mask_dir: Path | None = None

    @classmethod
    def available(cls, content: Mapping) -> bool:
        anns = content["annotations"]   # no annotations at all says nothing about masks (all([]) is True)
        return bool(anns) and all(ann.get("segmentation") for ann in anns)

    def setup(self, dataset: Any, name: str) -> None:
        super().setup(dataset, name)
        self.mask_dir = dataset.data_root / self.mask_dir_name if self.mask_dir_name else None
        self.class_names = ["background", *dataset.category_names]

    def check(self, info: dict, anns: list[dict]) -> None:
        height, width = info["height"], info["width"]
        if self.mask_dir is not None:
            path = self._mask_path(info)
            actual = image_size(path, "mask")
            if actual != (height, width):
                raise InvalidSampleError(f"mask of the wrong size: {path} is {actual[1]}x{actual[0]}, image id "
                                         f"{info['id']} in {self.dataset.ann_file} is {width}x{height}")
            return
        for ann in anns:
            where = f"annotation id {ann['id']} (image {info['file_name']}) in {self.dataset.ann_file}"
            seg = ann.get("segmentation")
            if not seg:
                raise InvalidSampleError(f"annotation without a mask: {where} has no 'segmentation' (the "
                                         f"{self.name} task paints its labels from them; or set mask_dir)")
            if isinstance(seg, dict) and [int(v) for v in seg.get("size", [])] != [height, width]:
                raise InvalidSampleError(f"mask of the wrong size: {seg.get('size')} for a {height}x{width} "
                                         f"image in {where}")

    def read(self, info: dict, anns: list[dict]) -> dict[str, np.ndarray]:
        if self.mask_dir is not None:
            return {"dense": self._read_png(self._mask_path(info))}
        mask = np.zeros((info["height"], info["width"]), np.uint8)
        for ann in anns:
            index = IGNORE_INDEX if ann.get("iscrowd", 0) else self.dataset.cat_index[ann["category_id"]] + 1
            mask[self.dataset.coco.annToMask(ann).astype(bool)] = index
        return {"dense": mask}

    def to_sample(self, info: dict, objects: list[dict], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"seg": torch.from_numpy(np.ascontiguousarray(out["dense"][self.name])).long()}

    def _mask_path(self, info: dict) -> Path:
        return self.mask_dir / (Path(info["file_name"]).stem + ".png")

    def _read_png(self, path: Path) -> np.ndarray:
        """A PNG of class indices (0 background, 255 ignore); other values are an error, not a wrong loss."""
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise InvalidSampleError(f"bad mask: {path} has mode {img.mode}, expected a single-channel "
                                         f"(L or P) PNG of class indices")
            mask = np.array(img, np.uint8)
        bad = np.setdiff1d(np.unique(mask), [*range(len(self.class_names)), IGNORE_INDEX])
        if bad.size:
            raise InvalidSampleError(f"bad mask: {path} holds values {bad.tolist()[:10]}, expected 0.."
                                     f"{len(self.class_names) - 1} or {IGNORE_INDEX}")
        return mask
