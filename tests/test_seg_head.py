"""SegHead: Semantic-FPN output at its stride, cross-entropy against a hand-written reference, decoding."""
import math

import pytest
import torch
import torch.nn.functional as F

from mtkd.models import SegHead
from mtkd.structures import class_map

IN = dict(in_channels=[8, 8, 8], in_strides=[4, 8, 16])


def neck_maps(batch=2, size=64, generator=None, requires_grad=False):
    """Random maps ``[B, 8, size/s, size/s]`` for strides 4, 8, 16."""
    return [torch.randn(batch, 8, size // s, size // s, generator=generator, requires_grad=requires_grad)
            for s in IN["in_strides"]]


@pytest.mark.parametrize("out_stride, used", [(4, [0, 1, 2]), (8, [1, 2]), (16, [2])])
def test_logits_at_out_stride_from_the_levels_at_or_above_it(out_stride, used):
    torch.manual_seed(0)
    head = SegHead(**IN, num_classes=5, channels=8, out_stride=out_stride).eval()
    feats = neck_maps(requires_grad=True)
    logits = head(feats)
    assert logits.shape == (2, 5, 64 // out_stride, 64 // out_stride) and logits.dtype == torch.float32
    logits.sum().backward()
    assert [i for i, f in enumerate(feats) if f.grad is not None and f.grad.abs().sum() > 0] == used
    assert head.output_signature()["num_classes"] == 5


def test_loss_is_cross_entropy_over_labelled_pixels_of_the_upsampled_logits():
    torch.manual_seed(0)
    head = SegHead(**IN, num_classes=3, channels=8, loss_weights=dict(ce=0.5))
    raw = torch.randn(2, 3, 16, 16)
    target = torch.randint(0, 3, (2, 64, 64))
    target[0, :10] = 255
    target[1, :, :5] = 255
    up = F.interpolate(raw, size=(64, 64), mode="bilinear", align_corners=False)
    log_p = up.log_softmax(dim=1)
    kept = target != 255
    picked = log_p.permute(0, 2, 3, 1)[kept].gather(1, target[kept][:, None]).squeeze(1)  # [num labelled pixels]
    expected = -picked.sum() / kept.sum()
    assert head.loss(raw, {"seg": target})["ce"].item() == pytest.approx(0.5 * expected.item(), rel=1e-5)


def test_an_image_with_no_labelled_pixel_gives_zero_with_a_graph():
    head = SegHead(**IN, num_classes=3, channels=8)
    raw = head(neck_maps(batch=1))
    loss = head.loss(raw, {"seg": torch.full((1, 64, 64), 255)})["ce"]
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert head.classifier.weight.grad is not None


def test_bad_targets_and_settings_are_errors_that_name_the_values():
    head = SegHead(**IN, num_classes=3, channels=8)
    raw = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"class ids \[3, 7\] are outside \[0, 2\] or 255"):
        head.loss(raw, {"seg": torch.tensor([3, 7, 1, 255]).repeat(2, 16, 16)})
    with pytest.raises(ValueError, match=r"long \[B, H, W\] with B=2, got \(64, 64\)"):
        head.loss(raw, {"seg": torch.zeros(64, 64, dtype=torch.long)})
    with pytest.raises(ValueError, match="no input level has stride >= out_stride=32"):
        SegHead(**IN, num_classes=3, out_stride=32)
    with pytest.raises(ValueError, match="stride 12 is not out_stride=4 times a power of 2"):
        SegHead(in_channels=[8, 8], in_strides=[4, 12], num_classes=3)
    with pytest.raises(ValueError, match="unknown terms"):
        SegHead(**IN, num_classes=3, loss_weights=dict(dice=1.0))


def test_predict_gives_logits_and_class_map_upsamples_them_before_the_argmax():
    head = SegHead(**IN, num_classes=3, channels=8)
    raw = torch.zeros(1, 3, 16, 16)
    raw[0, 2, :8] = 10.0   # class 2 in the top half of the stride-4 grid
    raw[0, 1, 8:] = 10.0   # class 1 in the bottom half
    (pred,) = head.predict(raw, {"img": torch.zeros(1, 3, 64, 64)})
    assert pred.dtype == torch.float32 and torch.equal(pred, raw[0])
    expected = torch.ones(64, 64, dtype=torch.long)
    expected[:32] = 2      # bilinear (align_corners=False): output row 31 samples source row 7.375
    assert torch.equal(class_map(pred, (64, 64)), expected)
    assert torch.equal(class_map(raw, (64, 64))[0], expected)   # batched alike


def test_overfits_a_fixed_batch():
    """Trained alone on fixed neck maps, the head memorises two masks: CE falls by >= 90%."""
    torch.manual_seed(0)
    head = SegHead(**IN, num_classes=3, channels=16)
    feats = neck_maps(generator=torch.Generator().manual_seed(1))
    target = torch.zeros(2, 64, 64, dtype=torch.long)
    target[0, 8:40, 12:44] = 1
    target[1, 30:60, 4:30] = 2
    target[1, :4] = 255
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = head.loss(head(feats), {"seg": target})["ce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(3), rel=0.3)  # chance level at the start
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    head.eval()
    pred = class_map(torch.stack(head.predict(head(feats), {"img": torch.zeros(2, 3, 64, 64)})), (64, 64))
    labelled = target != 255
    assert (pred[labelled] == target[labelled]).float().mean() > 0.95
