"""ClsMetric against hand-counted top-1 / top-5 hits."""
import pytest
import torch

from mtkd.evaluation import ClsMetric

PROBS = torch.tensor([[0.1, 0.5, 0.1, 0.1, 0.1, 0.1],        # label 1: top-1 hit
                      [0.3, 0.25, 0.2, 0.15, 0.05, 0.05],     # label 4: rank 5, top-5 hit only
                      [0.0, 0.02, 0.03, 0.04, 0.01, 0.9]])    # label 0: rank 6, a miss


def test_top1_top5_against_hand_count_over_batches():
    metric = ClsMetric(num_classes=6)
    metric.update(PROBS, {"cls": torch.tensor([1, 4, 0])})
    assert metric.compute() == {"cls/top1": pytest.approx(100 / 3), "cls/top5": pytest.approx(200 / 3)}
    metric.update(PROBS[2:], {"cls": torch.tensor([0])})   # a fourth image, a miss for both
    assert metric.compute() == {"cls/top1": pytest.approx(25.0), "cls/top5": pytest.approx(50.0)}
    assert "4 images" in metric.summary() and "top5 50.00" in metric.summary()
    metric.reset()
    assert metric.compute() == {"cls/top1": 0.0, "cls/top5": 0.0}


@pytest.mark.parametrize("num_classes, keys", [(3, {"cls/top1"}), (4, {"cls/top1"}),
                                               (5, {"cls/top1", "cls/top5"})])
def test_top5_only_with_at_least_five_classes(num_classes, keys):
    metric = ClsMetric(num_classes=num_classes)
    metric.update(torch.eye(num_classes), {"cls": torch.tensor([0] * num_classes)})
    result = metric.compute()
    assert set(result) == keys
    assert result["cls/top1"] == pytest.approx(100 / num_classes)
    if num_classes == 5:
        assert result["cls/top5"] == pytest.approx(100.0)   # every class is in the top 5


def test_class_count_from_dataset_or_predictions():
    class Data:
        num_classes = {"cls": 6}

    assert ClsMetric(dataset=Data()).num_classes == 6
    metric = ClsMetric()   # no dataset: the first predictions' width decides
    metric.update(PROBS[:, :4], {"cls": torch.tensor([1, 2, 0])})
    assert metric.compute() == {"cls/top1": pytest.approx(100 / 3)}   # rows' argmax: 1, 0, 3


def test_bad_input_is_refused_with_a_message():
    metric = ClsMetric(num_classes=6)
    with pytest.raises(ValueError, match="label 6"):
        metric.update(PROBS, {"cls": torch.tensor([1, 6, 0])})
    with pytest.raises(ValueError, match="4 classes, expected 6"):
        metric.update(PROBS[:, :4], {"cls": torch.tensor([1, 2, 0])})
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        metric.update(PROBS[0], {"cls": torch.tensor([1])})
    with pytest.raises(KeyError, match="'cls'"):
        metric.update(PROBS, {"seg": torch.zeros(3)})
    with pytest.raises(ValueError, match="topk"):
        ClsMetric(num_classes=6, topk=(5,))
