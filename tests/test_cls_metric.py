import pytest
import torch

from mtkd.evaluation import ClsMetric


def test_top1_top5_against_hand_count():
    probs = torch.tensor([[0.1, 0.5, 0.1, 0.1, 0.1, 0.1],    # top1 = 1
                          [0.3, 0.25, 0.2, 0.15, 0.05, 0.05],  # label 4: rank 5 -> top5 hit only
                          [0.0, 0.02, 0.03, 0.04, 0.01, 0.9]])  # label 0: rank 6 -> miss
    metric = ClsMetric(num_classes=6)
    metric.update(probs, {"cls": torch.tensor([1, 4, 0])})
    result = metric.compute()
    assert result == {"cls/top1": pytest.approx(100 / 3), "cls/top5": pytest.approx(200 / 3)}


def test_no_top5_below_five_classes():
    metric = ClsMetric(num_classes=3)
    metric.update(torch.eye(3), {"cls": torch.tensor([0, 1, 1])})
    assert metric.compute() == {"cls/top1": pytest.approx(200 / 3)}
