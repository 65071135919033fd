import numpy as np
import pytest
import torch

from mtkd.evaluation import SegMetric


def numpy_reference(pred, target, n, ignore=255):
    keep = target != ignore
    ious = []
    for c in range(n):
        p, t = (pred == c) & keep, (target == c) & keep
        union = (p | t).sum()
        if union:
            ious.append((p & t).sum() / union)
    return 100 * np.mean(ious), 100 * (pred == target)[keep].mean(), ious


def test_matches_numpy_reference_with_ignore_pixels():
    gen = torch.Generator().manual_seed(0)
    n = 5
    metric = SegMetric(num_classes=n)
    preds, targets = [], []
    for _ in range(3):
        target = torch.randint(0, n - 1, (2, 16, 16), generator=gen)  # class 4 never in the labels
        target[torch.rand(target.shape, generator=gen) < 0.2] = 255
        pred = torch.where(torch.rand(target.shape, generator=gen) < 0.6, target.clamp(max=n - 1),
                           torch.randint(0, n, target.shape, generator=gen))
        metric.update(list(pred), {"seg": target})
        preds.append(pred.numpy())
        targets.append(target.numpy())
    miou, acc, ious = numpy_reference(np.concatenate(preds), np.concatenate(targets), n)
    result = metric.compute()
    assert result["seg/mIoU"] == pytest.approx(miou)
    assert result["seg/aAcc"] == pytest.approx(acc)
    assert set(result) == {"seg/mIoU", "seg/aAcc"}
    assert "4" in metric.summary()


def test_perfect_and_reset():
    metric = SegMetric(num_classes=3)
    target = torch.tensor([[[0, 1], [2, 255]]])
    metric.update([target[0].clamp(max=2)], {"seg": target})
    assert metric.compute() == {"seg/mIoU": 100.0, "seg/aAcc": 100.0}
    metric.reset()
    assert metric.compute() == {"seg/mIoU": 0.0, "seg/aAcc": 0.0}


def test_class_names_from_dataset_and_shape_mismatch():
    class Data:
        num_classes = {"seg": 2}
        class_names = {"seg": ["background", "thing"]}

    metric = SegMetric(dataset=Data())
    assert "thing" in metric.per_class()
    with pytest.raises(ValueError, match="differ"):
        metric.update([torch.zeros(4, 4, dtype=torch.long)], {"seg": torch.zeros(1, 5, 5, dtype=torch.long)})
