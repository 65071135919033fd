"""CocoDetMetric against pycocotools run directly on the same json and the same detections."""
import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mtkd.evaluation import CocoDetMetric

WIDTH, HEIGHT = 64, 48
CATEGORIES = [(3, "cat"), (7, "dog"), (11, "bird")]   # non-contiguous ids: label i -> CATEGORIES[i][0]
GT_BOXES = {   # image id -> [(x, y, w, h, category id)], original pixels
    1: [(4, 4, 20, 16, 3), (30, 10, 24, 30, 7)],
    2: [(10, 20, 16, 16, 11), (40, 5, 20, 20, 3)],
    5: [(2, 2, 30, 40, 7), (35, 25, 20, 18, 11)],
}


def write_tiny_coco(path):
    """A three-image COCO json (64x48 px, three categories) at ``path``; returns the path."""
    images = [{"id": i, "file_name": f"{i}.png", "width": WIDTH, "height": HEIGHT} for i in GT_BOXES]
    anns = [{"id": n + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            for n, (i, x, y, w, h, c) in enumerate((i, *box) for i, boxes in GT_BOXES.items() for box in boxes)]
    cats = [{"id": c, "name": name} for c, name in CATEGORIES]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


class TinyCocoData:
    """Stand-in for the data module's COCO dataset: the attributes the metric reads."""

    def __init__(self, ann_file):
        self.ann_file = str(ann_file)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(self.ann_file)
        self.label_to_cat_id = [c for c, _ in CATEGORIES]
        self.class_names = {"det": [name for _, name in CATEGORIES]}
        self.num_classes = {"det": len(CATEGORIES)}


@pytest.fixture
def data(tmp_path):
    return TinyCocoData(write_tiny_coco(tmp_path / "tiny.json"))


def detections(image_id, shift=(0.0, 0.0), scores=None):
    """Ground truth as predictions ``(boxes xyxy, scores, labels)`` in original pixels, the first box shifted."""
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _ in GT_BOXES[image_id]], dtype=torch.float64)
    boxes[0, [0, 2]] += shift[0]
    boxes[0, [1, 3]] += shift[1]
    labels = torch.tensor([[c for c, _ in CATEGORIES].index(box[4]) for box in GT_BOXES[image_id]])
    scores = torch.tensor(scores or [0.9 - 0.1 * k for k in range(len(labels))], dtype=torch.float64)
    return boxes, scores, labels


def to_input_frame(boxes, scale=1.0, offset=(0.0, 0.0), flip=False):
    """Original-pixel boxes as the head predicts them after ``input = original * scale + offset`` (+ flip)."""
    boxes = boxes.clone()
    if flip:
        boxes = torch.stack([WIDTH - boxes[:, 2], boxes[:, 1], WIDTH - boxes[:, 0], boxes[:, 3]], dim=1)
    return boxes * scale + torch.tensor([offset[0], offset[1], offset[0], offset[1]], dtype=boxes.dtype)


def feed(metric, image_id, boxes, scores, labels, scale=1.0, offset=(0.0, 0.0), flip=False):
    pred = {"boxes": to_input_frame(boxes, scale, offset, flip).float(), "scores": scores.float(), "labels": labels}
    meta = {"image_id": image_id, "ori_size": (HEIGHT, WIDTH), "scale_factor": (scale, scale), "offset": offset,
            "flip": flip}
    metric.update([pred], {"meta": [meta]})


def coco_results(image_id, boxes, scores, labels):
    """The same detections as pycocotools result dicts, clipped to the image like the metric does."""
    out = []
    for (x0, y0, x1, y1), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        x0, x1 = min(max(x0, 0), WIDTH), min(max(x1, 0), WIDTH)
        y0, y1 = min(max(y0, 0), HEIGHT), min(max(y1, 0), HEIGHT)
        out.append({"image_id": image_id, "category_id": CATEGORIES[label][0], "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": score})
    return out


def pycocotools_stats(coco, results, image_ids, cat_ids=None):
    """mAP, AP50, AP75 in percent by COCOeval directly (optionally for some categories only)."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "bbox")
        evaluator.params.imgIds = sorted(image_ids)
        if cat_ids is not None:
            evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [100 * max(float(v), 0.0) for v in evaluator.stats[:3]]


def test_perfect_predictions_in_a_letterboxed_2x_frame_give_100(data, capsys):
    metric = CocoDetMetric(dataset=data)
    for image_id in GT_BOXES:
        feed(metric, image_id, *detections(image_id), scale=2.0, offset=(3.0, 5.0))
    assert metric.compute() == {"det/mAP": pytest.approx(100), "det/AP50": pytest.approx(100),
                                "det/AP75": pytest.approx(100)}
    assert metric.per_class() == {"cat": pytest.approx(100), "dog": pytest.approx(100), "bird": pytest.approx(100)}
    assert "bird" in metric.summary() and "3 images" in metric.summary()
    assert capsys.readouterr().out == ""   # COCOeval's printing is captured


def test_shifted_boxes_match_pycocotools_overall_and_per_class(data):
    metric = CocoDetMetric(dataset=data)
    results = []
    for image_id, shift in zip(GT_BOXES, [(3.0, 0.0), (0.0, -4.0), (5.0, 5.0)]):
        dets = detections(image_id, shift)
        feed(metric, image_id, *dets)
        results += coco_results(image_id, *dets)
    got = metric.compute()
    expected = pycocotools_stats(data.coco, results, GT_BOXES)
    assert [got["det/mAP"], got["det/AP50"], got["det/AP75"]] == pytest.approx(expected)
    assert 0 < got["det/mAP"] < 100
    per_class = metric.per_class()
    for cat_id, name in CATEGORIES:
        assert per_class[name] == pytest.approx(pycocotools_stats(data.coco, results, GT_BOXES, [cat_id])[0])


@pytest.mark.parametrize("flip", [False, True])
def test_boxes_from_a_resized_frame_evaluate_like_originals(data, flip):
    original, resized = CocoDetMetric(dataset=data), CocoDetMetric(dataset=data)
    for image_id in GT_BOXES:
        dets = detections(image_id, shift=(4.0, 3.0))
        feed(original, image_id, *dets)
        feed(resized, image_id, *dets, scale=2.0, offset=(0.0, 8.0), flip=flip)
    expected = original.compute()
    assert 0 < expected["det/mAP"] < 100
    assert resized.compute() == pytest.approx(expected)


def test_boxes_past_the_image_are_clipped_like_pycocotools_input(data):
    metric = CocoDetMetric(dataset=data)
    dets = detections(1, shift=(-10.0, -8.0))   # the first box starts outside the image
    feed(metric, 1, *dets)
    got = metric.compute()
    assert [got["det/mAP"], got["det/AP50"], got["det/AP75"]] == pytest.approx(
        pycocotools_stats(data.coco, coco_results(1, *dets), [1]))


def test_only_the_images_seen_are_evaluated(data):
    metric = CocoDetMetric(dataset=data)
    feed(metric, 1, *detections(1))
    assert metric.compute()["det/mAP"] == pytest.approx(100)   # images 2 and 5 were not seen
    empty = detections(2)
    feed(metric, 2, empty[0][:0], empty[1][:0], empty[2][:0])   # seen, nothing found: its boxes are misses
    got = metric.compute()
    assert [got["det/mAP"], got["det/AP50"], got["det/AP75"]] == pytest.approx(
        pycocotools_stats(data.coco, coco_results(1, *detections(1)), [1, 2]))
    assert got["det/mAP"] < 100


def test_an_image_seen_twice_counts_once(data):
    once, twice = CocoDetMetric(dataset=data), CocoDetMetric(dataset=data)
    for image_id in GT_BOXES:
        dets = detections(image_id, shift=(3.0, 2.0))
        feed(once, image_id, *dets)
        feed(twice, image_id, *dets)
    feed(twice, 1, *detections(1, shift=(3.0, 2.0)))   # what DistributedSampler padding does
    assert twice.compute() == pytest.approx(once.compute())


def test_no_detections_give_zero_not_a_crash(data):
    metric = CocoDetMetric(dataset=data)
    assert metric.compute() == {"det/mAP": 0.0, "det/AP50": 0.0, "det/AP75": 0.0}   # nothing seen at all
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    meta = {"image_id": 1, "ori_size": (HEIGHT, WIDTH), "scale_factor": (1.0, 1.0), "offset": (0.0, 0.0)}
    metric.update([empty], {"meta": [meta]})
    assert metric.compute() == {"det/mAP": 0.0, "det/AP50": 0.0, "det/AP75": 0.0}
    per_class = metric.per_class()   # image 1 has a cat and a dog, no bird
    assert per_class["cat"] == 0.0 and per_class["dog"] == 0.0 and math.isnan(per_class["bird"])


def test_bad_input_is_refused_with_a_message(data):
    with pytest.raises(ValueError, match="COCO-format"):
        CocoDetMetric(dataset=None)
    metric = CocoDetMetric(dataset=data)
    boxes, scores, labels = detections(1)
    meta = {"image_id": 1, "ori_size": (HEIGHT, WIDTH), "scale_factor": (1.0, 1.0), "offset": (0.0, 0.0)}
    with pytest.raises(ValueError, match="image_id 99"):
        metric.update([{"boxes": boxes, "scores": scores, "labels": labels}], {"meta": [{**meta, "image_id": 99}]})
    with pytest.raises(ValueError, match="label 3"):
        metric.update([{"boxes": boxes, "scores": scores, "labels": labels + 2}], {"meta": [meta]})
    with pytest.raises(ValueError, match="label -1"):
        metric.update([{"boxes": boxes, "scores": scores, "labels": labels - 1}], {"meta": [meta]})
    with pytest.raises(KeyError, match="offset"):
        metric.update([{"boxes": boxes, "scores": scores, "labels": labels}],
                      {"meta": [{k: v for k, v in meta.items() if k != "offset"}]})
    with pytest.raises(ValueError, match="must match"):
        metric.update([{"boxes": boxes, "scores": scores[:1], "labels": labels}], {"meta": [meta]})


@pytest.mark.parametrize("steps", [
    [dict(type="Resize", height=96, width=80)],
    [dict(type="HorizontalFlip", p=1.0), dict(type="Resize", height=128, width=128)],
    [dict(type="VerticalFlip", p=1.0), dict(type="LongestMaxSize", max_size=100),
     dict(type="PadIfNeeded", min_height=112, min_width=112, position="center")],
])
def test_pipeline_meta_and_metric_mapping_agree(steps):
    """Boxes sent through a real data pipeline come back to the original boxes through the metric's mapping."""
    from mtkd.data.transforms import Pipeline
    from mtkd.evaluation.det import boxes_to_original
    image = np.zeros((48, 64, 3), np.uint8)
    boxes = np.array([[8, 5, 30, 20], [35, 25, 60, 45]], np.float32)
    out = Pipeline(steps)(image, boxes=boxes)
    meta = {"ori_size": (48, 64), "scale_factor": out["scale_factor"], "offset": out["offset"], "flip": out["flip"],
            "vflip": out.get("vflip", False)}
    assert boxes_to_original(out["boxes"].astype(np.float64), meta) == pytest.approx(boxes, abs=1e-3)
