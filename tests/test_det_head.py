import math

import pytest
import torch

from mtkd.models import DetHead, FCOSAssigner

IN = dict(in_channels=[8, 8], in_strides=[8, 16])


def head(**kwargs):
    return DetHead(**IN, num_classes=3, strides=(8, 16), channels=8, **kwargs)


def raw_with_boxes(det, img_hw, placements):
    """A raw output that is background everywhere but at the given (point index, box, class) placements."""
    points, strides = det.points(img_hw)
    raw = torch.full((1, len(points), 5 + 3), -20.0)
    for index, box, cls in placements:
        (x, y), s = points[index].tolist(), float(strides[index])
        ltrb = torch.tensor([x - box[0], y - box[1], box[2] - x, box[3] - y]) / s
        raw[0, index, :4] = ltrb.log()
        raw[0, index, 4] = 20.0
        raw[0, index, 5 + cls] = 20.0
    return raw


def test_hand_made_raw_output_decodes_to_known_boxes():
    det = head().eval()
    points, _ = det.points((64, 64))
    a = int(((points - torch.tensor([20.0, 20.0])).abs().sum(1)).argmin())
    b = int(((points - torch.tensor([44.0, 36.0])).abs().sum(1)).argmin())
    raw = raw_with_boxes(det, (64, 64), [(a, [10.0, 12.0, 30.0, 28.0], 2), (b, [36.0, 30.0, 58.0, 50.0], 0)])
    pred = det.predict(raw, {"img": torch.zeros(1, 3, 64, 64)})[0]
    order = pred["labels"].argsort(descending=True)
    assert pred["boxes"][order] == pytest.approx(torch.tensor([[10.0, 12.0, 30.0, 28.0], [36.0, 30.0, 58.0, 50.0]]), abs=1e-3)
    assert pred["labels"][order].tolist() == [2, 0] and (pred["scores"] > 0.99).all()


def test_nms_removes_a_duplicate():
    det = head().eval()
    box = [10.0, 10.0, 40.0, 40.0]
    raw = raw_with_boxes(det, (64, 64), [(9, box, 1), (10, [11.0, 10.0, 40.0, 41.0], 1), (63, [40.0, 40.0, 62.0, 62.0], 1)])
    pred = det.predict(raw, {"img": torch.zeros(1, 3, 64, 64)})[0]
    assert len(pred["boxes"]) == 2


def test_image_without_objects_gives_finite_losses_and_no_positives():
    det = head()
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    batch = {"img": torch.zeros(2, 3, 64, 64), "boxes": [torch.zeros(0, 4), torch.tensor([[8.0, 8.0, 40.0, 40.0]])],
             "labels": [torch.zeros(0, dtype=torch.long), torch.tensor([1])]}
    points, strides = det.points((64, 64))
    assert (det.assigner.assign(points, strides, batch["boxes"][0]) == -1).all()
    losses = det.loss(det(feats), batch)
    assert all(torch.isfinite(v) for v in losses.values())
    empty = {"img": batch["img"][:1], "boxes": batch["boxes"][:1], "labels": batch["labels"][:1]}
    losses = det.loss(det([f[:1] for f in feats]), empty)
    assert losses["box"].item() == 0 and losses["cls"].item() == 0 and math.isfinite(losses["obj"].item())


def test_assigner_center_sampling_scale_ranges_and_smallest_area():
    assigner = FCOSAssigner(strides=(8, 16), center_radius=1.5, scale_ranges=((0, 24), (24, math.inf)))
    points = torch.tensor([[20.0, 20.0], [20.0, 20.0], [60.0, 60.0]])
    strides = torch.tensor([8, 16, 8])
    small, big = [12.0, 12.0, 28.0, 28.0], [0.0, 0.0, 64.0, 64.0]
    assigned = assigner.assign(points, strides, torch.tensor([big, small]))
    assert assigned[0].item() == 1   # stride 8 point: the small box (max distance 8 in range, smaller area)
    assert assigned[1].item() == 0   # stride 16 point: only the big box's distances fit its range... and center
    with pytest.raises(ValueError, match="strides \\[4\\]"):
        assigner.assign(points, torch.tensor([4, 8, 8]), torch.tensor([small]))


def test_assigner_gives_a_tiny_box_the_nearest_point():
    assigner = FCOSAssigner(strides=(8,))
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0]])
    assigned = assigner.assign(points, torch.tensor([8, 8, 8]), torch.tensor([[9.0, 2.0, 11.0, 5.0]]))
    assert assigned.tolist() == [-1, 0, -1]


def test_missing_neck_stride_is_an_error():
    with pytest.raises(ValueError, match="strides \\[32\\] are not among"):
        DetHead(**IN, num_classes=3, strides=(8, 32))
