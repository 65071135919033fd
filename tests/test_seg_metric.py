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
    metric = SegMetric(num_classes=6)
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
    as_list, as_tensor = SegMetric(num_classes=6), SegMetric(num_classes=6)
    for pred, target in random_batches(seed=1):
        as_list.update(list(pred), {"seg": target})
        as_tensor.update(pred, {"seg": target})
    assert as_tensor.compute() == as_list.compute()


def test_perfect_then_reset():
    metric = SegMetric(num_classes=3)
    target = torch.tensor([[[0, 1], [2, 255]]])
    metric.update([torch.tensor([[0, 1], [2, 0]])], {"seg": target})   # the ignored pixel's prediction is free
    assert metric.compute() == {"seg/mIoU": 100.0, "seg/aAcc": 100.0}
    metric.reset()
    assert metric.compute() == {"seg/mIoU": 0.0, "seg/aAcc": 0.0}


def test_class_names_and_count_from_the_dataset():
    class Data:
        num_classes = {"seg": 2}
        class_names = {"seg": ["background", "thing"]}

    metric = SegMetric(dataset=Data())
    metric.update([torch.tensor([[0, 1], [1, 1]])], {"seg": torch.tensor([[[0, 1], [0, 1]]])})
    metric.compute()
    assert metric.per_class() == {"background": pytest.approx(50.0), "thing": pytest.approx(200 / 3)}
    assert "thing" in metric.summary() and "66.67" in metric.summary()
    assert metric.primary == "seg/mIoU"


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match="num_classes"):
        SegMetric(dataset=None)
    metric = SegMetric(num_classes=3)
    with pytest.raises(ValueError, match="differ"):
        metric.update([torch.zeros(4, 4, dtype=torch.long)], {"seg": torch.zeros(1, 5, 5, dtype=torch.long)})
    with pytest.raises(ValueError, match="label value 7"):
        metric.update([torch.zeros(2, 2, dtype=torch.long)], {"seg": torch.tensor([[[0, 7], [1, 255]]])})
    with pytest.raises(ValueError, match="prediction value 3"):
        metric.update([torch.tensor([[0, 3], [1, 2]])], {"seg": torch.zeros(1, 2, 2, dtype=torch.long)})
    assert metric.compute() == {"seg/mIoU": 0.0, "seg/aAcc": 0.0}   # nothing refused was counted
