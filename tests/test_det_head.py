import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchvision.ops import box_iou

from mtkd.models import DetHead

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


def test_missing_neck_stride_is_an_error():
    with pytest.raises(ValueError, match="strides \\[32\\] are not among"):
        DetHead(**IN, num_classes=3, strides=(8, 32))
    with pytest.raises(ValueError, match=r"strides must increase strictly .* got \[16, 8\]"):
        DetHead(**IN, num_classes=3, strides=(16, 8))


def test_box_encoding_round_trip_and_points_order():
    det = head()
    points, strides = det.points((40, 24))  # not multiples of 16: ceil sizes 5x3 and 3x2
    assert len(points) == det.num_points((40, 24)) == 5 * 3 + 3 * 2
    assert points[:4].tolist() == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0]]  # row-major, centers
    assert points[15].tolist() == [8.0, 8.0] and strides[15].item() == 16
    gen = torch.Generator().manual_seed(0)
    ltrb = 1 + torch.rand(len(points), 4, generator=gen) * 30
    boxes = torch.cat([points - ltrb[:, :2], points + ltrb[:, 2:]], dim=1)
    decoded = det.decode_boxes((ltrb / strides[:, None]).log(), points, strides)
    assert torch.allclose(decoded, boxes, atol=1e-4)


def test_raw_rows_match_num_points_for_sizes_not_divisible_by_the_stride():
    from mtkd.models import MultiTaskModel

    model = MultiTaskModel(backbone=dict(type="SeedConvNet", channels=(8, 8, 8, 8), out_indices=(1, 2, 3)),
                           neck=dict(type="FPN", out_channels=8, num_extra_levels=1),
                           heads=dict(det=dict(type="DetHead", channels=8)), num_classes={"det": 3})
    img = torch.randn(1, 3, 70, 50)
    raw = model(img)["det"]
    assert raw.shape == (1, model.heads["det"].num_points((70, 50)), 8)
    batch = {"img": img, "boxes": [torch.tensor([[3.0, 5.0, 40.0, 60.0]])], "labels": [torch.tensor([2])]}
    assert all(torch.isfinite(v) for v in model.loss({"det": raw}, batch).values())
    with pytest.raises(ValueError, match="does not fit"):
        model.heads["det"].loss(raw, {**batch, "img": torch.randn(1, 3, 64, 64)})


def test_bad_targets_are_errors_that_say_what_is_wrong():
    det = head()
    raw = det([torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)])
    good = {"img": torch.zeros(2, 3, 64, 64), "boxes": [torch.tensor([[8.0, 8.0, 40.0, 40.0]])] * 2,
            "labels": [torch.tensor([1])] * 2}
    with pytest.raises(ValueError, match="one entry per image"):
        det.loss(raw, {**good, "boxes": good["boxes"][:1], "labels": good["labels"][:1]})
    with pytest.raises(ValueError, match="x2 > x1"):
        det.loss(raw, {**good, "boxes": [torch.tensor([[40.0, 8.0, 8.0, 40.0]])] * 2})
    with pytest.raises(ValueError, match=r"class ids \[3\]"):
        det.loss(raw, {**good, "labels": [torch.tensor([3])] * 2})
    with pytest.raises(ValueError, match="box_loss"):
        head(box_loss="iou")
    with pytest.raises(ValueError, match="unknown terms \\['bbox'\\]"):
        head(loss_weights=dict(bbox=1.0))


def test_loss_terms_follow_the_formulas():
    """One positive point: box = w * GIoU loss, cls = w * BCE summed over classes, obj = BCE over all points."""
    from torchvision.ops import generalized_box_iou_loss
    det = head(loss_weights=dict(box=2.0, obj=1.0, cls=1.0))
    points, strides = det.points((64, 64))
    gt = torch.tensor([[16.0, 16.0, 22.0, 22.0]])  # smaller than a stride: exactly one point (nearest center)
    batch = {"img": torch.zeros(1, 3, 64, 64), "boxes": [gt], "labels": [torch.tensor([1])]}
    assigned = det.assigner.assign(points, strides, gt)
    (pos,) = torch.nonzero(assigned >= 0).flatten().tolist()
    raw = torch.randn(1, len(points), 8, generator=torch.Generator().manual_seed(0))
    losses = det.loss(raw, batch)
    pred = det.decode_boxes(raw[0, pos:pos + 1, :4], points[pos:pos + 1], strides[pos:pos + 1])
    assert losses["box"].item() == pytest.approx(2.0 * generalized_box_iou_loss(pred, gt).item(), rel=1e-5)
    cls_target = torch.tensor([0.0, 1.0, 0.0])
    assert losses["cls"].item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(raw[0, pos, 5:], cls_target, reduction="sum").item(), rel=1e-5)
    obj_target = torch.zeros(len(points))
    obj_target[pos] = 1
    assert losses["obj"].item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(raw[0, :, 4], obj_target, reduction="sum").item(), rel=1e-5)


def test_nms_keeps_the_best_of_a_duplicate_and_works_per_class():
    det = head().eval()
    box = [10.0, 10.0, 40.0, 40.0]
    raw = raw_with_boxes(det, (64, 64), [(9, box, 1), (10, [11.0, 10.0, 40.0, 41.0], 1), (18, box, 2)])
    raw[0, 10, 5 + 1] = 2.0   # the duplicate scores sigmoid(2) = 0.88 < 1
    raw[0, 18, 5 + 2] = 1.0   # same box, another class: NMS is class-wise, it stays
    pred = det.predict(raw, {"img": torch.zeros(1, 3, 64, 64)})[0]
    assert pred["labels"].tolist() == [1, 2]  # sorted by score
    assert pred["boxes"] == pytest.approx(torch.tensor([box, box]), abs=1e-3)
    assert pred["scores"].tolist() == pytest.approx([1.0, torch.sigmoid(torch.tensor(1.0)).item()], abs=1e-4)


def test_predict_clamps_to_the_image_and_applies_score_threshold_and_max_per_image():
    det = head(score_thr=0.05, max_per_img=2).eval()
    raw = raw_with_boxes(det, (64, 64), [(9, [-10.0, 5.0, 30.0, 70.0], 0), (38, [40.0, 30.0, 60.0, 50.0], 1),
                                         (63, [50.0, 50.0, 62.0, 62.0], 2), (0, [0.0, 0.0, 6.0, 6.0], 2)])
    raw[0, 38, 5 + 1] = 1.0    # score 0.73
    raw[0, 63, 5 + 2] = 0.0    # score 0.5: third best, cut by max_per_img=2
    raw[0, 0, 5 + 2] = -3.0    # score 0.047 < score_thr
    pred = det.predict(raw, {"img": torch.zeros(1, 3, 64, 64)})[0]
    assert pred["labels"].tolist() == [0, 1]
    assert pred["boxes"] == pytest.approx(torch.tensor([[0.0, 5.0, 30.0, 64.0], [40.0, 30.0, 60.0, 50.0]]), abs=1e-3)
    assert pred["scores"].tolist() == pytest.approx([1.0, torch.sigmoid(torch.tensor(1.0)).item()], abs=1e-4)


def test_overfits_a_fixed_batch():
    """Trained alone on fixed neck maps, the head fits two images' boxes: the loss falls by >= 80% and the
    best detection of each image is its box with its class."""
    torch.manual_seed(0)
    det = head(score_thr=0.3)
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, 8, 8, 8, generator=gen), torch.randn(2, 8, 4, 4, generator=gen)]
    boxes = [torch.tensor([[6.0, 8.0, 30.0, 36.0]]), torch.tensor([[28.0, 20.0, 60.0, 58.0]])]
    batch = {"img": torch.zeros(2, 3, 64, 64), "boxes": boxes, "labels": [torch.tensor([2]), torch.tensor([0])]}
    optimizer = torch.optim.Adam(det.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        loss = sum(det.loss(det(feats), batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    det.eval()
    with torch.no_grad():
        pred = det.predict(det(feats), batch)
    for image, gt_box, gt_label in zip(pred, boxes, batch["labels"]):
        assert box_iou(image["boxes"][:1], gt_box).item() > 0.7 and image["labels"][0] == gt_label[0]


RANK_BOXES = ([[8.0, 8.0, 40.0, 40.0]],                                        # rank 0: one box
              [[2.0, 2.0, 12.0, 12.0], [20.0, 4.0, 60.0, 30.0], [30.0, 30.0, 62.0, 62.0],
               [4.0, 40.0, 20.0, 60.0], [40.0, 10.0, 48.0, 18.0]])             # rank 1: five boxes


def rank_case(rank):
    """Rank ``rank``'s batch (one 64 x 64 image) and a raw output ``[1, N, 8]`` seeded by the rank."""
    boxes = torch.tensor(RANK_BOXES[rank])
    batch = {"img": torch.zeros(1, 3, 64, 64), "boxes": [boxes], "labels": [torch.arange(len(boxes)) % 3]}
    raw = torch.randn(1, head().num_points((64, 64)), 8, generator=torch.Generator().manual_seed(rank))
    return batch, raw


def _loss_worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        batch, raw = rank_case(rank)
        losses = head().loss(raw, batch)
        torch.save({k: v.item() for k, v in losses.items()}, out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_loss_divides_by_the_mean_number_of_positives_over_ranks(tmp_path):
    """mmdet's ``reduce_mean(num_pos)``: ranks with 1 and 5 boxes divide their sums by the same normalizer."""
    det, sums, num_pos = head(), [], []
    points, strides = det.points((64, 64))
    for rank in range(2):  # single process: the local loss times the local count of positives is the sum
        batch, raw = rank_case(rank)
        count = int((det.assigner.assign(points, strides, batch["boxes"][0]) >= 0).sum())
        sums.append({k: v.item() * max(count, 1) for k, v in det.loss(raw, batch).items()})
        num_pos.append(count)
    assert num_pos[0] != num_pos[1]
    mp.spawn(_loss_worker, args=(tmp_path / "store", tmp_path), nprocs=2, join=True)
    norm = max(sum(num_pos) / 2, 1.0)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got == pytest.approx({k: v / norm for k, v in sums[rank].items()}, rel=1e-5), f"rank {rank}"
