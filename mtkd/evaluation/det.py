"""Detection metric: COCO mAP with pycocotools on the dataset's own annotation json."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval

from mtkd.engine import dist
from mtkd.registry import METRICS


@METRICS.register_module()
class CocoDetMetric:
    """``det/mAP``, ``det/AP50``, ``det/AP75`` in percent, by ``COCOeval`` on ``dataset.coco``.

    Predicted boxes (input pixels) go back to original pixels through each image's ``meta``
    (``input = original * scale_factor + offset``), labels to category ids through
    ``dataset.label_to_cat_id``. Only the images seen are evaluated; results are gathered over ranks and
    de-duplicated by image id.
    """

    primary = "det/mAP"

    def __init__(self, task: str = "det", dataset=None):
        if dataset is None or not hasattr(dataset, "coco"):
            raise ValueError("CocoDetMetric needs a dataset with a pycocotools `coco` (a COCO-format dataset)")
        self.task, self.dataset = task, dataset
        self.primary = f"{task}/mAP"
        self.reset()

    def reset(self) -> None:
        self.results: dict[int, list[dict]] = {}
        self._eval: COCOeval | None = None

    def update(self, preds: list[dict], batch: dict) -> None:
        for pred, meta in zip(preds, batch["meta"]):
            self.results[int(meta["image_id"])] = self._to_coco(pred, meta)

    def _to_coco(self, pred: dict, meta: dict) -> list[dict]:
        boxes = pred["boxes"].detach().float().cpu().numpy().reshape(-1, 4).astype(np.float64)
        (sx, sy), (ox, oy) = meta["scale_factor"], meta["offset"]
        height, width = meta["ori_size"]
        boxes = (boxes - [ox, oy, ox, oy]) / [sx, sy, sx, sy]
        boxes = boxes.clip(0, [width, height, width, height])
        scores = pred["scores"].detach().float().cpu().tolist()
        labels = pred["labels"].detach().cpu().tolist()
        cat_ids = self.dataset.label_to_cat_id
        return [{"image_id": int(meta["image_id"]), "category_id": int(cat_ids[int(label)]),
                 "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(score)}
                for (x0, y0, x1, y1), score, label in zip(boxes, scores, labels)]

    def _gathered(self) -> dict[int, list[dict]]:
        if not dist.is_dist():
            return self.results
        parts = [None] * dist.get_world_size()
        torch.distributed.all_gather_object(parts, self.results)
        merged: dict[int, list[dict]] = {}
        for part in parts:
            merged.update(part)
        return merged

    def compute(self) -> dict[str, float]:
        results = self._gathered()
        keys = [f"{self.task}/mAP", f"{self.task}/AP50", f"{self.task}/AP75"]
        detections = [d for dets in results.values() for d in dets]
        if not detections:
            self._eval = None
            return dict.fromkeys(keys, 0.0)
        coco = self.dataset.coco
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco.loadRes(detections)
            evaluator = COCOeval(coco, coco_dt, "bbox")
            evaluator.params.imgIds = sorted(results)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        self._eval = evaluator
        stats = [max(float(v), 0.0) * 100 for v in evaluator.stats[:3]]
        return dict(zip(keys, stats))

    def per_class(self) -> dict[str, float]:
        """AP (IoU .50:.95, all areas, 100 detections) per category name, from the last ``compute``."""
        if self._eval is None:
            return {}
        precision = self._eval.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
        out = {}
        for k, cat_id in enumerate(self._eval.params.catIds):
            values = precision[:, :, k]
            values = values[values > -1]
            out[self.dataset.coco.cats[cat_id]["name"]] = float(values.mean() * 100) if values.size else float("nan")
        return out

    def summary(self) -> str:
        lines = [f"{self.task} AP per class:"]
        lines += [f"  {name:<16} {value:6.2f}" for name, value in self.per_class().items()]
        return "\n".join(lines)
