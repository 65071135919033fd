"""Detection metric: COCO mAP with pycocotools on the dataset's own annotation json."""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.cocoeval import COCOeval

from mtkd.dist import all_gather_objects
from mtkd.registry import METRICS

META_KEYS = ("image_id", "ori_size", "scale_factor", "offset")


def boxes_to_original(boxes: np.ndarray, meta: dict) -> np.ndarray:
    """Map xyxy ``[K, 4]`` from input to original pixels, clipped to ``ori_size``.

    The pipeline records ``input = original * scale_factor + offset`` per axis, mirrored when ``flip``
    (horizontal) or ``vflip`` (vertical).
    """
    scale = np.asarray(meta["scale_factor"], np.float64).reshape(2)
    offset = np.asarray(meta["offset"], np.float64).reshape(2)
    height, width = (float(v) for v in meta["ori_size"])
    out = (boxes - np.tile(offset, 2)) / np.tile(scale, 2)
    if meta.get("flip", False):
        out = np.stack([width - out[:, 2], out[:, 1], width - out[:, 0], out[:, 3]], axis=1)
    if meta.get("vflip", False):
        out = np.stack([out[:, 0], height - out[:, 3], out[:, 2], height - out[:, 1]], axis=1)
    return out.clip(0, [width, height, width, height])


@METRICS.register_module()
class CocoDetMetric:
    """``det/mAP`` (IoU .50:.95), ``det/AP50``, ``det/AP75`` in percent, by pycocotools on ``dataset.coco``.

    Predicted boxes go back to original pixels through each image's ``meta``, labels to category ids
    through ``dataset.label_to_cat_id``. Only the images seen are evaluated, so a partial pass works.
    Under DDP ``compute()`` gathers every rank's detections and keeps one entry per image id, so the
    duplicates a DistributedSampler pads with count once.
    """

    primary = "det/mAP"

    def __init__(self, task: str = "det", dataset=None):
        missing = [name for name in ("coco", "label_to_cat_id") if not hasattr(dataset, name)]
        if missing:
            raise ValueError(f"CocoDetMetric(task={task!r}) needs a COCO-format dataset with a pycocotools "
                             f"`coco` and `label_to_cat_id`; {type(dataset).__name__} lacks {missing}")
        self.task, self.dataset, self.coco = task, dataset, dataset.coco
        self.source = getattr(dataset, "ann_file", "dataset.coco")
        self.primary = f"{task}/mAP"
        self.reset()

    def reset(self) -> None:
        self.results: dict[int, np.ndarray] = {}   # image id -> [K, 7] rows (id, x, y, w, h, score, cat id)
        self._eval: COCOeval | None = None
        self._seen: list[int] = []
        self._last: dict[str, float] | None = None

    def update(self, preds: list[dict], batch: dict) -> None:
        """preds: B dicts ``boxes`` float ``[K, 4]`` xyxy input px, ``scores`` ``[K]``, ``labels`` long ``[K]``."""
        metas = batch.get("meta")
        if metas is None or len(metas) != len(preds):
            raise ValueError(f"CocoDetMetric: need one batch['meta'] per prediction, got {len(preds)} "
                             f"predictions and {'no meta' if metas is None else len(metas)}")
        for pred, meta in zip(preds, metas):
            missing = [key for key in META_KEYS if key not in meta]
            if missing:
                raise KeyError(f"CocoDetMetric: batch['meta'] lacks {missing} (has {sorted(meta)})")
            image_id = int(meta["image_id"])
            if image_id not in self.coco.imgs:
                raise ValueError(f"CocoDetMetric: image_id {image_id} is not an image of {self.source}")
            self.results[image_id] = self._to_rows(pred, meta, image_id)
        self._last = None

    def _to_rows(self, pred: dict, meta: dict, image_id: int) -> np.ndarray:
        """One image's detections as loadRes rows ``[K, 7]``: image id, x, y, w, h (original px), score, cat."""
        boxes = pred["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
        scores = pred["scores"].detach().cpu().double().numpy().reshape(-1)
        labels = pred["labels"].detach().cpu().long().numpy().reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"CocoDetMetric: image {image_id} has {len(boxes)} boxes, {len(scores)} scores and "
                             f"{len(labels)} labels; they must match")
        num_labels = len(self.dataset.label_to_cat_id)
        bad = labels[(labels < 0) | (labels >= num_labels)]
        if bad.size:
            raise ValueError(f"CocoDetMetric: image {image_id} has label {int(bad[0])}, outside "
                             f"0..{num_labels - 1} (dataset.label_to_cat_id)")
        cat_ids = np.array([self.dataset.label_to_cat_id[int(label)] for label in labels], np.float64)
        boxes = boxes_to_original(boxes, meta)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        return np.column_stack([np.full(len(boxes), image_id, np.float64), xywh, scores, cat_ids])

    def compute(self) -> dict[str, float]:
        """Global mAP/AP50/AP75 over the images seen by any rank (all zeros without a detection)."""
        merged: dict[int, np.ndarray] = {}
        for part in all_gather_objects(self.results):
            merged.update(part)     # a padded duplicate has the same image id, hence the same entry
        self._seen = sorted(merged)
        rows = [r for r in merged.values() if len(r)]
        keys = [f"{self.task}/mAP", f"{self.task}/AP50", f"{self.task}/AP75"]
        if not rows:
            self._eval = None
            self._last = dict.fromkeys(keys, 0.0)
            return dict(self._last)
        with contextlib.redirect_stdout(io.StringIO()):   # COCOeval prints its progress and table
            evaluator = COCOeval(self.coco, self.coco.loadRes(np.concatenate(rows)), "bbox")
            evaluator.params.imgIds = self._seen
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        self._eval = evaluator
        self._last = {key: max(float(v), 0.0) * 100 for key, v in zip(keys, evaluator.stats[:3])}
        return dict(self._last)

    def per_class(self) -> dict[str, float]:
        """AP@[.50:.95] per category name in percent from the last ``compute()``; NaN without ground truth."""
        if self._last is None:
            self.compute()
        cat_ids = sorted(self.coco.getCatIds())
        if self._eval is None:   # no detections: 0 for every category that has ground truth in the images seen
            has_gt = {ann["category_id"] for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=self._seen))
                      if not ann.get("iscrowd", 0)}
            return {self.coco.cats[c]["name"]: 0.0 if c in has_gt else float("nan") for c in cat_ids}
        precision = self._eval.eval["precision"][:, :, :, 0, -1]   # [T, R, K], area "all", 100 detections
        out = {}
        for k, cat_id in enumerate(self._eval.params.catIds):
            values = precision[:, :, k]
            values = values[values > -1]
            out[self.coco.cats[cat_id]["name"]] = float(values.mean()) * 100 if values.size else float("nan")
        return out

    def summary(self) -> str:
        """A per-category AP table over the images seen (from the last ``compute()``)."""
        per_class = self.per_class()   # first: it runs compute() when none was made
        lines = [f"{self.task} AP@[.50:.95] per class (%) over {len(self._seen)} images:"]
        lines += [f"  {name:<20} {value:6.2f}" for name, value in per_class.items()]
        return "\n".join(lines)
