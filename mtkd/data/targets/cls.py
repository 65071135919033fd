"""Image classification ground truth: one class per image, from ``images[i]["label"]``."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mtkd.data.io import InvalidSampleError
from mtkd.data.targets.base import TargetReader
from mtkd.registry import TARGETS


def image_class_names(ann_file: Path, image_categories: list) -> list[str]:
    """Names of the image-level classes, indexed by ``images[i]["label"]``; ids must be 0..K-1."""
    ids = sorted(c.get("id", -1) for c in image_categories)
    if ids != list(range(len(ids))):
        raise ValueError(f"annotation file {ann_file}: 'image_categories' ids must be 0..{len(ids) - 1} "
                         f"(the values of images[i]['label']), got {ids}")
    return [c["name"] for c in sorted(image_categories, key=lambda c: c["id"])]


@TARGETS.register_module()
class ImageLabelTarget(TargetReader):
    """Long ``[]`` class index under ``cls``: ``images[i]["label"]``, named by the top-level
    ``image_categories`` list (ids 0..K-1)."""

    task = "cls"
    auto = True
    batch_keys = ("cls",)
    requirement = "a top-level 'image_categories' list and an int images[i]['label']"

    @classmethod
    def available(cls, content: Mapping) -> bool:
        return bool(content.get("image_categories"))

    def setup(self, dataset: Any, name: str) -> None:
        super().setup(dataset, name)
        categories = dataset.coco.dataset.get("image_categories")
        if not categories:
            raise ValueError(f"annotation file {dataset.ann_file} has no 'image_categories' list; the {name} task "
                             f"needs {self.requirement}")
        self.class_names = image_class_names(dataset.ann_file, categories)

    def check(self, info: dict, anns: list[dict]) -> None:
        label, count = info.get("label"), len(self.class_names)
        if type(label) is not int or not 0 <= label < count:
            raise InvalidSampleError(f"bad image label: image id {info['id']} in {self.dataset.ann_file} has label "
                                     f"{label!r}, expected an int in 0..{count - 1}")

    def to_sample(self, info: dict, objects: list[dict], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"cls": torch.tensor(info["label"], dtype=torch.long)}
