"""The reader side of a task: how its ground truth is read from a COCO-format dataset and transformed.

A reader is registered in ``TARGETS`` and named in a dataset config (``targets=dict(<task>=dict(type=...))``)
or, for readers with ``auto = True``, found by :class:`~mtkd.data.coco.CocoMultiTaskDataset` when the
annotation json holds what they need. Per sample the dataset calls ``read`` (the raw target at the
original resolution), carries what it returns through the pipeline together with the image, and calls
``to_sample`` on the transformed result, whose tensors go into the batch under ``batch_keys``.

A reader may take arguments of the dataset itself (``dataset_options``, e.g. ``image_labels``): the dataset
passes each one that is set to the readers that declare it, so the dataset never names a task. What the
data says about a task's head beyond its class count (``head_args``, e.g. ``multi_label=True``) goes to the
head at build time, as ``num_classes`` does.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


class TargetReader:
    """Base class of the target readers; a subclass sets the class attributes and overrides what it needs.

    Attributes:
        task: the task name it serves when found by discovery (``auto``).
        auto: found when ``available(json)`` holds; readers of user tasks are named in configs instead.
        batch_keys: the sample keys ``to_sample`` returns (the head's ``batch_keys``).
        listed_keys: those of ``batch_keys`` collated as per-image lists (sizes differ); the rest stack.
        needs_instances: whether it reads the annotations' boxes after the pipeline (``out["boxes"]``).
        fill: for a dense target, the value of pixels without a source after the transforms.
        requirement: what the json must hold, for the error when the task is asked for but unavailable.
        dataset_options: the dataset arguments it takes as constructor keywords; when one is set, an
            ``auto`` reader that declares it is found even if ``available`` says no, so that ``setup``
            says what the json lacks instead of the task silently missing.
    """

    task: str = ""
    auto: bool = False
    batch_keys: tuple[str, ...] = ()
    listed_keys: tuple[str, ...] = ()
    needs_instances: bool = False
    fill: float | None = None
    requirement: str = ""
    dataset_options: tuple[str, ...] = ()

    def __init__(self):
        self.dataset: Any = None
        self.name = self.task
        self.class_names: list[str] | None = None
        self.head_args: dict[str, Any] = {}   # set in setup: head arguments the data decides (multi_label)

    @classmethod
    def available(cls, content: Mapping) -> bool:
        """Whether the annotation json (``content``, a dict) holds this reader's ground truth."""
        return True

    def setup(self, dataset: Any, name: str) -> None:
        """Bind to the dataset (``data_root``, ``ann_file``, ``coco``, categories) under task ``name``; read
        class names; raise ValueError naming the file when the json lacks what the reader needs."""
        self.dataset, self.name = dataset, name

    def check(self, info: dict, anns: list[dict]) -> None:
        """Start-up validation of one image's ground truth; raise InvalidSampleError naming the file."""

    def read(self, info: dict, anns: list[dict]) -> dict[str, np.ndarray]:
        """The raw target at the original resolution: ``{"dense": [H, W] or [H, W, C]}`` and/or
        ``{"keypoints": xy [P, 2]}`` to carry through the pipeline; ``{}`` when nothing is geometric."""
        return {}

    def to_sample(self, info: dict, objects: list[dict], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The batch entries from the pipeline's output ``out`` (``out["dense"][name]``,
        ``out["keypoints"][name]``, ``out["boxes"]`` with ``out["box_ids"]`` indexing ``objects``, the
        image's non-crowd annotations)."""
        raise NotImplementedError(f"{type(self).__name__} must implement to_sample")
