import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.cocoeval import COCOeval

from mtkd.data import CocoMultiTaskDataset
from mtkd.evaluation import CocoDetMetric


@pytest.fixture
def dataset(tiny_synthetic):
    return CocoMultiTaskDataset(tiny_synthetic, "annotations/instances_val.json", "images/val",
                                pipeline=[dict(type="Resize", height=128, width=128)])


def gt_predictions(dataset, image_id, scale=1.0, shift=0.0):
    anns = dataset.coco.imgToAnns[image_id]
    boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([dataset.label_to_cat_id.index(a["category_id"]) for a in anns], dtype=torch.long)
    return {"boxes": (boxes + shift) * scale, "scores": torch.linspace(0.9, 0.5, len(anns)), "labels": labels}


def meta(image_id, scale=1.0):
    return {"image_id": image_id, "ori_size": (64, 64), "scale_factor": (scale, scale), "offset": (0.0, 0.0)}


def reference_stats(dataset, results):
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(dataset.coco, dataset.coco.loadRes(results), "bbox")
        evaluator.params.imgIds = sorted(dataset.coco.imgs)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [100 * max(v, 0) for v in evaluator.stats[:3]]


def test_perfect_predictions_in_a_resized_frame_give_100(dataset):
    metric = CocoDetMetric(dataset=dataset)
    for image_id in dataset.coco.imgs:   # predictions made at 2x, mapped back through scale_factor
        metric.update([gt_predictions(dataset, image_id, scale=2.0)], {"meta": [meta(image_id, 2.0)]})
    assert metric.compute() == {"det/mAP": pytest.approx(100), "det/AP50": pytest.approx(100),
                                "det/AP75": pytest.approx(100)}
    assert len(metric.per_class()) == 8


def test_shifted_boxes_match_pycocotools(dataset):
    metric = CocoDetMetric(dataset=dataset)
    results = []
    for image_id in dataset.coco.imgs:
        pred = gt_predictions(dataset, image_id, shift=2.0)
        metric.update([pred], {"meta": [meta(image_id)]})
        for box, score, label in zip(pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist()):
            x0, y0, x1, y1 = np.clip(box, 0, 64)
            results.append({"image_id": image_id, "category_id": dataset.label_to_cat_id[label],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    expected = reference_stats(dataset, results)
    got = metric.compute()
    assert [got["det/mAP"], got["det/AP50"], got["det/AP75"]] == pytest.approx(expected)
    assert 0 < got["det/mAP"] < 100


def test_no_detections_give_zero(dataset):
    metric = CocoDetMetric(dataset=dataset)
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    metric.update([empty], {"meta": [meta(1)]})
    assert metric.compute() == {"det/mAP": 0.0, "det/AP50": 0.0, "det/AP75": 0.0}


def test_needs_a_coco_dataset():
    with pytest.raises(ValueError, match="COCO-format"):
        CocoDetMetric(dataset=None)
