"""Image classification ground truth: one class per image (``images[i]["label"]``) or, multi-label, the
object categories present in the image (``image_labels="instances"``)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mtkd.data.io import InvalidSampleError
from mtkd.data.targets.base import TargetReader
from mtkd.registry import TARGETS

IMAGE_LABELS = ("json", "instances")   # ImageLabelTarget(image_labels=...), CocoMultiTaskDataset(image_labels=...)


def image_class_names(ann_file: Path, image_categories: list) -> list[str]:
    """Names of the image-level classes, indexed by ``images[i]["label"]``; ids must be 0..K-1."""
    ids = sorted(c.get("id", -1) for c in image_categories)
    if ids != list(range(len(ids))):
        raise ValueError(f"annotation file {ann_file}: 'image_categories' ids must be 0..{len(ids) - 1} "
                         f"(the values of images[i]['label']), got {ids}")
    return [c["name"] for c in sorted(image_categories, key=lambda c: c["id"])]


@TARGETS.register_module()
class ImageLabelTarget(TargetReader):
    """Image-level classes under ``cls``, read from the source ``image_labels`` names:

    ``"json"`` (found when the json has ``image_categories``): long ``[]``, the class index
    ``images[i]["label"]``, named by the top-level ``image_categories`` list (ids 0..K-1); single-label.
    ``"instances"``: float ``[C]``, the multi-hot vector of the object categories (``categories``, in the
    dataset's category order) of the image's non-crowd annotations; multi-label, so the head is built with
    ``multi_label=True`` (``head_args``): sigmoid + BCE, and the metric reports mAP. The presence of a
    category is read from the annotations, not from what survives a crop of the pipeline.
    """

    task = "cls"
    auto = True
    batch_keys = ("cls",)
    dataset_options = ("image_labels",)
    requirement = ("a top-level 'image_categories' list and an int images[i]['label'] (or image_labels='instances' "
                   "and a non-empty COCO 'categories' list)")

    def __init__(self, image_labels: str = "json"):
        super().__init__()
        if image_labels not in IMAGE_LABELS:
            raise ValueError(f"ImageLabelTarget: image_labels must be one of {IMAGE_LABELS}, got {image_labels!r}")
        self.image_labels = image_labels
        self.multi_label = image_labels == "instances"

    @classmethod
    def available(cls, content: Mapping) -> bool:
        return bool(content.get("image_categories"))

    def setup(self, dataset: Any, name: str) -> None:
        super().setup(dataset, name)
        if self.multi_label:
            if not dataset.category_names:
                raise ValueError(f"annotation file {dataset.ann_file} has no object categories (its 'categories' "
                                 f"list is empty); image_labels='instances' makes the {name} task the multi-hot "
                                 f"vector of the object categories in each image, one class per category")
            self.class_names, self.head_args = list(dataset.category_names), {"multi_label": True}
            return
        categories = dataset.coco.dataset.get("image_categories")
        if not categories:
            raise ValueError(f"annotation file {dataset.ann_file} has no 'image_categories' list; the {name} task "
                             f"needs {self.requirement}")
        self.class_names = image_class_names(dataset.ann_file, categories)

    def check(self, info: dict, anns: list[dict]) -> None:
        if self.multi_label:   # the dataset checks every annotation's category id
            return
        label, count = info.get("label"), len(self.class_names)
        if type(label) is not int or not 0 <= label < count:
            raise InvalidSampleError(f"bad image label: image id {info['id']} in {self.dataset.ann_file} has label "
                                     f"{label!r}, expected an int in 0..{count - 1}")

    def to_sample(self, info: dict, objects: list[dict], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if not self.multi_label:
            return {"cls": torch.tensor(info["label"], dtype=torch.long)}
        present = torch.zeros(len(self.class_names), dtype=torch.float32)
        present[[self.dataset.cat_index[obj["category_id"]] for obj in objects]] = 1.0
        return {"cls": present}
