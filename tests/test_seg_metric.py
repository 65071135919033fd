"""SegMetric against an independent numpy computation of IoU and pixel accuracy."""
import math

import numpy as np
import pytest
import torch

from mtkd.evaluation import SegMetric


def numpy_reference(pred, target, num_classes, ignore=255):
    """Per-class IoU (NaN when a class is in neither map), mIoU over the others, pixel accuracy; percent."""
    keep = target != ignore
    ious = []
    for c in range(num_classes):
        p, t = (pred == c) & keep, (target == c) & keep
        union = (p | t).sum()
        ious.append((p & t).sum() / union * 100 if union else float("nan"))
    return np.nanmean(ious), 100 * (pred == target)[keep].mean(), ious


def random_batches(num_batches=3, num_classes=6, seed=0):
    """Labels use classes 0..3 only and predictions 0..4, so class 4 has IoU 0 and class 5 is absent."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(num_batches):
        target = torch.randint(0, 4, (2, 16, 12), generator=gen)
        target[torch.rand(target.shape, generator=gen) < 0.2] = 255
        noise = torch.randint(0, 5, target.shape, generator=gen)
        pred = torch.where(torch.rand(target.shape, generator=gen) < 0.6, target.clamp(max=num_classes - 1), noise)
        yield pred, target


def test_matches_numpy_reference_with_ignore_pixels():
    metric = SegMetric(num_classes=6, resolution="input")
    batches = list(random_batches())
    for pred, target in batches:
        metric.update(list(pred), {"seg": target})
    pred = np.concatenate([p.numpy() for p, _ in batches])
    target = np.concatenate([t.numpy() for _, t in batches])
    miou, acc, ious = numpy_reference(pred, target, 6)
    result = metric.compute()
    assert set(result) == {"seg/mIoU", "seg/aAcc"}
    assert result["seg/mIoU"] == pytest.approx(miou)
    assert result["seg/aAcc"] == pytest.approx(acc)
    per_class = metric.per_class()
    assert list(per_class) == ["0", "1", "2", "3", "4", "5"]
    assert [per_class[str(c)] for c in range(5)] == pytest.approx(ious[:5])
    assert per_class["4"] == 0.0 and math.isnan(per_class["5"])   # predicted-only counts, absent is left out


def test_batched_tensor_equals_list_of_maps():
    as_list, as_tensor = SegMetric(num_classes=6, resolution="input"), SegMetric(num_classes=6, resolution="input")
    for pred, target in random_batches(seed=1):
        as_list.update(list(pred), {"seg": target})
        as_tensor.update(pred, {"seg": target})
    assert as_tensor.compute() == as_list.compute()


def test_perfect_then_reset():
    metric = SegMetric(num_classes=3, resolution="input")
    target = torch.tensor([[[0, 1], [2, 255]]])
    metric.update([torch.tensor([[0, 1], [2, 0]])], {"seg": target})   # the ignored pixel's prediction is free
    assert metric.compute() == {"seg/mIoU": 100.0, "seg/aAcc": 100.0}
    metric.reset()
    assert metric.compute() == {"seg/mIoU": 0.0, "seg/aAcc": 0.0}


def test_class_names_and_count_from_the_dataset():
    class Data:
        num_classes = {"seg": 2}
        class_names = {"seg": ["background", "thing"]}

    metric = SegMetric(dataset=Data(), resolution="input")
    metric.update([torch.tensor([[0, 1], [1, 1]])], {"seg": torch.tensor([[[0, 1], [0, 1]]])})
    metric.compute()
    assert metric.per_class() == {"background": pytest.approx(50.0), "thing": pytest.approx(200 / 3)}
    assert "thing" in metric.summary() and "66.67" in metric.summary()
    assert metric.primary == "seg/mIoU"


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match="num_classes"):
        SegMetric(dataset=None)
    metric = SegMetric(num_classes=3, resolution="input")
    with pytest.raises(ValueError, match="differ"):
        metric.update([torch.zeros(4, 4, dtype=torch.long)], {"seg": torch.zeros(1, 5, 5, dtype=torch.long)})
    with pytest.raises(ValueError, match="label value 7"):
        metric.update([torch.zeros(2, 2, dtype=torch.long)], {"seg": torch.tensor([[[0, 7], [1, 255]]])})
    with pytest.raises(ValueError, match="prediction value 3"):
        metric.update([torch.tensor([[0, 3], [1, 2]])], {"seg": torch.zeros(1, 2, 2, dtype=torch.long)})
    assert metric.compute() == {"seg/mIoU": 0.0, "seg/aAcc": 0.0}   # nothing refused was counted


def bilinear_numpy(scores, u, v):
    """Bilinear sample of ``scores`` [C, h, w] at input-map coordinates (u, v) in pixel units where pixel i
    spans [i, i + 1] (centre i + 0.5), borders clamped: a written-out reference for grid_sample."""
    _, h, w = scores.shape
    x, y = np.clip(u - 0.5, 0, w - 1), np.clip(v - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    return (scores[:, y0, x0] * (1 - fx) * (1 - fy) + scores[:, y0, x1] * fx * (1 - fy)
            + scores[:, y1, x0] * (1 - fx) * fy + scores[:, y1, x1] * fx * fy)


class OriginalData:
    """A dataset stand-in with ground truth at the original resolution, 30 x 40, classes 0..3 and ignore."""

    num_classes = {"seg": 4}

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.gt = {i: rng.integers(0, 4, (30, 40)).astype(np.uint8) for i in (7, 8)}
        for mask in self.gt.values():
            mask[rng.random(mask.shape) < 0.1] = 255

    def read_dense(self, task, image_id):
        assert task == "seg"
        return self.gt[image_id]


def test_original_resolution_matches_numpy_on_a_letterboxed_flipped_input():
    """Scores at stride 4 of a 32 x 32 letterbox (40 x 30 scaled by 0.8, 4 px of padding on top, mirrored)
    are resized onto the 30 x 40 original before the argmax, then counted against the original labels."""
    data = OriginalData()
    metas = [dict(image_id=image_id, ori_size=(30, 40), img_size=(32, 32), scale_factor=(0.8, 0.8),
                  offset=(0.0, 4.0), flip=flip) for image_id, flip in ((7, True), (8, False))]
    scores = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    metric = SegMetric(dataset=data)
    metric.update(list(scores), {"seg": torch.zeros(2, 32, 32, dtype=torch.long), "meta": metas})
    preds, targets = [], []
    ys, xs = np.meshgrid(np.arange(30) + 0.5, np.arange(40) + 0.5, indexing="ij")
    for score, meta in zip(scores.numpy(), metas):
        xs_m = 40 - xs if meta["flip"] else xs
        u, v = (xs_m * 0.8 + 0.0) / 4, (ys * 0.8 + 4.0) / 4   # input pixels -> the stride-4 map's pixels
        preds.append(bilinear_numpy(score, u, v).argmax(0))
        targets.append(data.gt[meta["image_id"]])
    miou, acc, _ = numpy_reference(np.stack(preds), np.stack(targets), 4)
    result = metric.compute()
    assert result["seg/mIoU"] == pytest.approx(miou) and result["seg/aAcc"] == pytest.approx(acc)


def test_original_equals_input_when_the_input_is_the_image():
    """With no resize (scale 1, offset 0) both resolutions count the same pixels."""
    data = OriginalData(seed=1)
    metas = [dict(image_id=i, ori_size=(30, 40), img_size=(30, 40), scale_factor=(1, 1), offset=(0, 0))
             for i in (7, 8)]
    scores = torch.randn(2, 4, 15, 20, generator=torch.Generator().manual_seed(4))
    labels = torch.stack([torch.from_numpy(data.gt[i].astype(np.int64)) for i in (7, 8)])
    batch = {"seg": labels, "meta": metas}
    original, at_input = SegMetric(dataset=data), SegMetric(dataset=data, resolution="input")
    original.update(list(scores), batch)
    at_input.update(list(scores), batch)
    assert original.compute() == pytest.approx(at_input.compute())


def test_original_resolution_needs_read_dense_and_meta():
    with pytest.raises(ValueError, match="resolution='input'"):
        SegMetric(num_classes=3)
    with pytest.raises(ValueError, match="resolution must be"):
        SegMetric(num_classes=3, resolution="native")
    metric = SegMetric(dataset=OriginalData())
    with pytest.raises(ValueError, match="needs 'meta'"):
        metric.update([torch.zeros(4, 8, 8)], {"seg": torch.zeros(1, 32, 32, dtype=torch.long)})
