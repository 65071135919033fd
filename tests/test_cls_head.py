"""ClsHead: GAP + linear on the coarsest map, label-smoothed cross-entropy against its formula, softmax."""
import math

import pytest
import torch

from mtkd.models import ClsHead

IN = dict(in_channels=[4, 6, 10], in_strides=[8, 16, 32])


def neck_maps(batch=3, generator=None):
    """Random maps ``[B, C_i, 64/s_i, 64/s_i]`` for strides 8, 16, 32."""
    return [torch.randn(batch, c, 64 // s, 64 // s, generator=generator) for c, s in zip(*IN.values())]


def test_logits_are_a_linear_map_of_the_pooled_coarsest_level():
    torch.manual_seed(0)
    head = ClsHead(**IN, num_classes=5, dropout=0.5).eval()
    feats = neck_maps()
    logits = head(feats)
    pooled = feats[2].sum(dim=(2, 3)) / (2 * 2)  # [B, 10]
    expected = pooled @ head.fc.weight.T + head.fc.bias
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected)
    feats[0].fill_(float("nan"))  # the finer levels are not read
    assert torch.isfinite(head(feats)).all()
    assert head.output_signature()["num_classes"] == 5


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_is_label_smoothed_cross_entropy(smoothing):
    head = ClsHead(**IN, num_classes=4, label_smoothing=smoothing, loss_weights=dict(ce=2.0))
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.0, 0.0, 3.0, -2.0]])
    target = torch.tensor([0, 3])
    log_p = logits.log_softmax(dim=1)
    nll = -log_p[torch.arange(2), target]
    expected = ((1 - smoothing) * nll + smoothing * -log_p.mean(dim=1)).mean()  # Szegedy et al. 2016
    assert head.loss(logits, {"cls": target})["ce"].item() == pytest.approx(2.0 * expected.item(), rel=1e-6)


def test_predict_gives_softmax_probabilities():
    head = ClsHead(**IN, num_classes=3)
    logits = torch.tensor([[0.0, math.log(3.0), 0.0]])
    assert head.predict(logits, {})[0].tolist() == pytest.approx([0.2, 0.6, 0.2])


def test_bad_targets_and_settings_are_errors_that_name_the_values():
    head = ClsHead(**IN, num_classes=4)
    with pytest.raises(ValueError, match=r"class ids \[4\] are outside \[0, 3\]"):
        head.loss(torch.zeros(2, 4), {"cls": torch.tensor([1, 4])})
    with pytest.raises(ValueError, match=r"long \[B\] with B=2, got \(2, 1\)"):
        head.loss(torch.zeros(2, 4), {"cls": torch.tensor([[1], [2]])})
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        ClsHead(**IN, num_classes=4, label_smoothing=1.0)
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        ClsHead(**IN, num_classes=0)


def test_overfits_a_fixed_batch():
    """Trained alone on fixed neck maps, the head fits four labels: CE falls by >= 90%."""
    torch.manual_seed(0)
    head = ClsHead(**IN, num_classes=4)
    feats = neck_maps(batch=4, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.Adam(head.parameters(), lr=5e-2)
    losses = []
    for _ in range(60):
        loss = head.loss(head(feats), {"cls": target})["ce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    assert torch.equal(head.predict(head.eval()(feats), {}).argmax(dim=1), target)


# -- multi-label (the data decides: CocoMultiTaskDataset(image_labels="instances")) ------------------------
MULTI_HOT = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])


def ref_bce(logits, target, smoothing=0.0):
    """Mean over images and classes of -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))], written out."""
    terms = []
    for z_row, y_row in zip(logits.tolist(), target.tolist()):
        for z, y in zip(z_row, y_row):
            y = y * (1 - smoothing) + smoothing / 2
            p = 1 / (1 + math.exp(-z))
            terms.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_multi_label_loss_is_per_class_binary_cross_entropy(smoothing):
    head = ClsHead(**IN, num_classes=3, multi_label=True, label_smoothing=smoothing, loss_weights=dict(bce=2.0))
    losses = head.loss(LOGITS, {"cls": MULTI_HOT})
    assert set(losses) == {"bce"}
    assert losses["bce"].item() == pytest.approx(2.0 * ref_bce(LOGITS, MULTI_HOT, smoothing), rel=1e-6)


def test_multi_label_predicts_sigmoids_and_says_so_in_its_signature():
    head = ClsHead(**IN, num_classes=3, multi_label=True)
    torch.testing.assert_close(head.predict(LOGITS, {}), LOGITS.sigmoid())
    assert head.output_signature()["multi_label"] is True
    assert ClsHead(**IN, num_classes=3).output_signature()["multi_label"] is False


def test_multi_label_and_single_label_targets_are_not_mixed_up():
    multi, single = ClsHead(**IN, num_classes=3, multi_label=True), ClsHead(**IN, num_classes=3)
    with pytest.raises(ValueError, match=r"multi-hot \[B, C\] = \(2, 3\), got \(2,\)"):
        multi.loss(LOGITS, {"cls": torch.tensor([0, 2])})
    with pytest.raises(ValueError, match=r"only 0 and 1, got \[0.5\]"):
        multi.loss(LOGITS, {"cls": torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])})
    with pytest.raises(ValueError, match="needs a head built with multi_label=True"):
        single.loss(LOGITS, {"cls": MULTI_HOT})
    with pytest.raises(ValueError, match=r"unknown terms \['ce'\]; known: \['bce'\]"):
        ClsHead(**IN, num_classes=3, multi_label=True, loss_weights=dict(ce=1.0))


def test_multi_label_head_overfits_a_fixed_batch():
    torch.manual_seed(0)
    head = ClsHead(**IN, num_classes=4, multi_label=True)
    feats = neck_maps(batch=4, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    optimizer = torch.optim.Adam(head.parameters(), lr=5e-2)
    for _ in range(60):
        loss = head.loss(head(feats), {"cls": target})["bce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal((head.predict(head.eval()(feats), {}) > 0.5).float(), target)


def model_cfg(**cls_head):
    return dict(type="MultiTaskModel", backbone=dict(type="SeedConvNet", channels=(8, 8, 8, 8), out_indices=(2, 3)),
                heads=dict(cls=dict(type="ClsHead", **cls_head)))


def test_the_model_takes_multi_label_from_the_data_and_refuses_a_config_that_disagrees():
    from mtkd.registry import MODELS

    data = dict(num_classes={"cls": 3}, head_args={"cls": {"multi_label": True}})
    assert MODELS.build(model_cfg(), **data).heads["cls"].multi_label is True
    assert MODELS.build(model_cfg(), num_classes={"cls": 3}).heads["cls"].multi_label is False
    assert MODELS.build(model_cfg(multi_label=True), **data).heads["cls"].multi_label is True
    with pytest.raises(ValueError, match="sets multi_label=False but the data gives multi_label=True"):
        MODELS.build(model_cfg(multi_label=False), **data)
    depth_only = dict(model_cfg(), heads=dict(depth=dict(type="DepthHead")))
    with pytest.raises(ValueError, match=r"head 'depth' \(DepthHead\): the data gives it multi_label=True, but it has "
                                         r"no 'multi_label' argument"):
        MODELS.build(depth_only, head_args={"depth": {"multi_label": True}})


def test_drawer_lists_the_classes_present_and_keeps_the_single_label_line():
    from mtkd.visualization import build_drawers
    from mtkd.visualization.cls import ClassLabelDrawer

    drawer = ClassLabelDrawer("cls", class_names=["cat", "dog", "car"], multi_label=True)
    assert drawer.describe(torch.tensor([0.7, 0.2, 0.95])) == "car:0.9500,cat:0.7000"
    assert drawer.describe(torch.tensor([0.1, 0.2, 0.3])) == "-"
    assert drawer.describe(torch.tensor([0.2, 0.7, 0.1])) == "dog:0.7000"   # told by the data, not guessed
    single = ClassLabelDrawer("cls", ["cat", "dog", "car"])
    assert single.describe(torch.tensor([0.2, 0.7, 0.1])) == "dog\t0.7000"
    built = build_drawers({"cls": dict(type="ClassLabelDrawer")}, ["cls"], {"cls": ["cat", "dog", "car"]},
                          {"cls": {"multi_label": True}})   # the head_args a multi-label run records
    assert built["cls"].multi_label
    assert not build_drawers({"cls": dict(type="ClassLabelDrawer")}, ["cls"])["cls"].multi_label
    image = torch.zeros(3, 24, 96, dtype=torch.uint8)
    for sample in ({"cls": torch.tensor([1.0, 0.0, 1.0])}, {"cls": torch.tensor(2)}):
        drawn = drawer.draw_target(image, sample)
        assert drawn.shape == image.shape and drawn.any()
    assert drawer.draw(image, torch.tensor([0.7, 0.2, 0.95])).any()
