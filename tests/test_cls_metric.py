"""ClsMetric against hand-counted top-1 / top-5 hits, and multi-label mAP against a written-out reference."""
import numpy as np
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


# -- multi-label: mAP over classes ---------------------------------------------------------------------
def ref_average_precision(scores, positive):
    """Written out: the mean over the positive images of the precision among all images scoring at least
    as high as that image (ties count in full), which is scikit-learn's average_precision_score."""
    precisions = []
    for score, is_positive in zip(scores, positive):
        if is_positive:
            above = [p for s, p in zip(scores, positive) if s >= score]
            precisions.append(sum(above) / len(above))
    return sum(precisions) / len(precisions)


def ref_map(scores, targets):
    columns = [(scores[:, c].tolist(), targets[:, c].bool().tolist()) for c in range(scores.shape[1])]
    aps = [ref_average_precision(s, t) for s, t in columns if any(t)]
    return 100 * sum(aps) / len(aps)


def test_average_precision_matches_scikit_learn_values():
    from mtkd.evaluation.cls import average_precision

    # scikit-learn's docstring example of average_precision_score: 0.83...
    assert average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == pytest.approx(5 / 6)
    # one tie of a positive and a negative at the top: precision 1/2 there, then 2/3
    assert average_precision(np.array([0.9, 0.9, 0.5, 0.1]), np.array([1, 0, 1, 0], bool)) == pytest.approx(
        (1 / 2 + 2 / 3) / 2)
    assert average_precision(np.array([0.3, 0.3, 0.3]), np.array([1, 0, 0], bool)) == pytest.approx(1 / 3)


def multi_label_data(seed=0, batches=4, size=5, classes=6, ties=False):
    gen = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(batches):
        targets = (torch.rand(size, classes, generator=gen) < 0.4).float()
        targets[:, -1] = 0   # a class without positives: left out of the mean
        scores = (0.6 * targets + torch.rand(size, classes, generator=gen)).clamp(max=1)
        data.append(((scores * 4).round() / 4 if ties else scores, targets))
    return data


@pytest.mark.parametrize("ties", [False, True])
def test_multi_label_map_matches_the_reference_over_batches(ties):
    metric = ClsMetric(num_classes=6, multi_label=True)
    assert metric.primary == "cls/mAP"
    data = multi_label_data(ties=ties)
    for scores, targets in data:
        metric.update(scores, {"cls": targets})
    result = metric.compute()
    scores, targets = torch.cat([d[0] for d in data]), torch.cat([d[1] for d in data])
    assert set(result) == {"cls/mAP"} and 0 < result["cls/mAP"] < 100
    assert result["cls/mAP"] == pytest.approx(ref_map(scores.double(), targets), rel=1e-9)
    assert "20 images (5 classes with positives)" in metric.summary()
    metric.reset()
    assert metric.compute() == {"cls/mAP": 0.0}


def test_multi_label_comes_from_the_dataset_and_mixups_are_errors():
    class Data:
        num_classes = {"cls": 3}
        head_args = {"cls": {"multi_label": True}}

    assert ClsMetric(dataset=Data()).primary == "cls/mAP" and ClsMetric(num_classes=3).primary == "cls/top1"
    perfect = ClsMetric(dataset=Data())
    perfect.update(torch.tensor([[0.9, 0.1, 0.8], [0.2, 0.7, 0.1]]), {"cls": torch.tensor([[1, 0, 1], [0, 1, 0]])})
    assert perfect.compute() == {"cls/mAP": pytest.approx(100.0)}
    with pytest.raises(ValueError, match=r"multi-hot labels need ClsMetric\(multi_label=True\)"):
        ClsMetric(num_classes=3).update(torch.rand(2, 3), {"cls": torch.ones(2, 3)})
    with pytest.raises(ValueError, match=r"multi-hot labels \[B, C\], got \(2, 3\) and \(2,\)"):
        ClsMetric(dataset=Data()).update(torch.rand(2, 3), {"cls": torch.tensor([0, 2])})
    with pytest.raises(ValueError, match=r"must be 0 or 1, got \[2.0\]"):
        ClsMetric(dataset=Data()).update(torch.rand(2, 3), {"cls": torch.tensor([[0, 2.0, 1], [1, 1, 1]])})


def test_multi_label_map_is_computed_over_every_ranks_images(monkeypatch):
    """Under DDP each rank holds its own images; compute() gathers them (all_gather_objects, tested with
    real processes in test_evaluation_dist.py) before any AP, since AP does not average over ranks."""
    import mtkd.evaluation.cls as cls_module

    data = multi_label_data()
    ranks = [ClsMetric(num_classes=6, multi_label=True) for _ in range(2)]
    for index, (scores, targets) in enumerate(data):
        ranks[index % 2].update(scores, {"cls": targets})
    expected = ClsMetric(num_classes=6, multi_label=True)
    for scores, targets in data:
        expected.update(scores, {"cls": targets})
    alone = ranks[1].compute()["cls/mAP"]
    monkeypatch.setattr(cls_module, "all_gather_objects", lambda obj: [(m.scores, m.targets) for m in ranks])
    assert ranks[1].compute() == pytest.approx(expected.compute(), rel=1e-12)
    assert alone != pytest.approx(expected.compute()["cls/mAP"])   # half the images give another mAP
