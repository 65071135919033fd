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
