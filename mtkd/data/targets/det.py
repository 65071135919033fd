"""Detection ground truth: the non-crowd annotations' boxes and category indices after the pipeline."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mtkd.data.targets.base import TargetReader
from mtkd.registry import TARGETS


@TARGETS.register_module()
class BoxTarget(TargetReader):
    """``boxes`` float ``[N, 4]`` xyxy in input pixels and ``labels`` long ``[N]`` (category index), per image.

    The dataset carries every non-crowd annotation box through the pipeline (boxes keeping less than
    ``min_visibility`` of their area are dropped there); crowd regions are not objects to detect.
    """

    task = "det"
    auto = True
    batch_keys = ("boxes", "labels")
    listed_keys = ("boxes", "labels")
    needs_instances = True
    requirement = "COCO 'annotations' with 'bbox' and 'category_id'"

    def setup(self, dataset: Any, name: str) -> None:
        super().setup(dataset, name)
        self.class_names = list(dataset.category_names)

    def to_sample(self, info: dict, objects: list[dict], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        labels = np.array([self.dataset.cat_index[objects[i]["category_id"]] for i in out["box_ids"]], np.int64)
        return {"boxes": torch.from_numpy(np.ascontiguousarray(out["boxes"])), "labels": torch.from_numpy(labels)}
