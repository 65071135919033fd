"""DepthHead: log-depth at its stride, SILog (Eigen et al. 2014) and L1 against a numpy float64 reference,
unknown pixels ignored, decoding; SegHead unchanged by the shared Semantic-FPN helper."""
import math

import numpy as np
import pytest
import torch

from mtkd.models import DepthHead, MultiTaskModel, SegHead

IN = dict(in_channels=[8, 8, 8], in_strides=[4, 8, 16])


def neck_maps(batch=2, size=64, generator=None, requires_grad=False):
    """Random maps ``[B, 8, size/s, size/s]`` for strides 4, 8, 16."""
    return [torch.randn(batch, 8, size // s, size // s, generator=generator, requires_grad=requires_grad)
            for s in IN["in_strides"]]


def upsample_np(maps, height, width):
    """Bilinear resize of ``[B, h, w]`` (align_corners=False: pixel centres at i + 0.5, clamped at the edges)."""
    def taps(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    y0, y1, wy = taps(height, maps.shape[1])
    x0, x1, wx = taps(width, maps.shape[2])
    rows = maps[:, y0] * (1 - wy)[None, :, None] + maps[:, y1] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def reference_losses(raw, target, lam=0.5):
    """Eigen et al. 2014 eq. 4 per image (mean d^2 - lam mean(d)^2, d = log pred - log gt over gt > 0), mean
    over images with a valid pixel; L1 in metres over all valid pixels of the batch."""
    log_pred = upsample_np(raw[:, 0].numpy(), *target.shape[-2:])
    gt = target.numpy()
    per_image, abs_errors = [], []
    for lp, g in zip(log_pred, gt):
        valid = g > 0
        if valid.any():
            d = lp[valid] - np.log(g[valid])
            per_image.append(np.mean(d ** 2) - lam * np.mean(d) ** 2)
            abs_errors.extend(np.abs(np.exp(lp[valid]) - g[valid]))
    return float(np.mean(per_image)), float(np.mean(abs_errors))


def depth_target(batch=2, size=64, seed=0):
    """Depth in metres ``[B, size, size]`` in 1..9 with about a fifth of the pixels unknown (0)."""
    gen = torch.Generator().manual_seed(seed)
    depth = 1 + 8 * torch.rand(batch, size, size, generator=gen, dtype=torch.float64)
    return depth.masked_fill(torch.rand(depth.shape, generator=gen) < 0.2, 0.0)


@pytest.mark.parametrize("out_stride, used", [(4, [0, 1, 2]), (8, [1, 2])])
def test_log_depth_at_out_stride_from_the_levels_at_or_above_it(out_stride, used):
    torch.manual_seed(0)
    head = DepthHead(**IN, channels=8, out_stride=out_stride).eval()
    feats = neck_maps(requires_grad=True)
    raw = head(feats)
    assert raw.shape == (2, 1, 64 // out_stride, 64 // out_stride) and raw.dtype == torch.float32
    raw.sum().backward()
    assert [i for i, f in enumerate(feats) if f.grad is not None and f.grad.abs().sum() > 0] == used
    assert head.batch_keys == ("depth",) and not hasattr(head, "num_classes")
    assert head.output_signature() == {"head": "DepthHead", "output": "log-depth [B, 1, h, w]"}


@pytest.mark.parametrize("size", [16, 64])   # 16: no resize; 64: 4x bilinear upsampling to the label size
def test_silog_and_l1_match_the_written_out_formula(size):
    torch.manual_seed(0)
    head = DepthHead(**IN, channels=8, loss_weights=dict(silog=2.0, l1=0.5)).double()
    raw = torch.randn(3, 1, 16, 16, dtype=torch.float64) * 0.5 + 1.0
    target = depth_target(3, size)
    silog, l1 = reference_losses(raw, target)
    losses = head.loss(raw, {"depth": target})
    assert set(losses) == {"silog", "l1"}
    assert losses["silog"].item() == pytest.approx(2.0 * silog, rel=1e-10)
    assert losses["l1"].item() == pytest.approx(0.5 * l1, rel=1e-10)


def test_silog_uses_lambda_one_half_by_default_and_only_the_weighted_terms():
    head = DepthHead(**IN, channels=8)
    assert head.silog_lambda == 0.5 and head.loss_weights == {"silog": 1.0, "l1": 0.0}
    raw = torch.full((1, 1, 4, 4), math.log(2.0))
    target = torch.full((1, 4, 4), 1.0)    # d = log 2 everywhere: log^2 2 - 0.5 log^2 2
    losses = head.loss(raw, {"depth": target})
    assert set(losses) == {"silog"} and losses["silog"].item() == pytest.approx(0.5 * math.log(2.0) ** 2)
    assert set(DepthHead(**IN, channels=8, loss_weights=dict(silog=0.0, l1=1.0)).loss(raw, {"depth": target})) == {"l1"}


def test_unknown_pixels_are_ignored_and_images_without_any_do_not_dilute_the_mean():
    head = DepthHead(**IN, channels=8, loss_weights=dict(l1=1.0)).double()
    raw = torch.randn(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    target = 1 + 8 * torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    target[0, :, :4] = 0.0
    losses = head.loss(raw, {"depth": target})
    sum(losses.values()).backward()
    assert raw.grad[0, 0, :, :4].abs().max() == 0 and raw.grad[0, 0, :, 4:].abs().min() > 0
    moved = raw.detach().clone()
    moved[0, 0, :, :4] += 5.0           # predictions over unknown pixels are free
    again = head.loss(moved, {"depth": target})
    assert all(again[k].item() == pytest.approx(losses[k].item(), rel=1e-12) for k in losses)
    target[1] = 0.0                     # image 1 has no known pixel: the loss is image 0's alone
    alone = head.loss(raw[:1], {"depth": target[:1]})
    both = head.loss(raw, {"depth": target})
    assert all(both[k].item() == pytest.approx(alone[k].item(), rel=1e-12) for k in both)


def test_a_batch_without_any_known_pixel_gives_zero_with_a_graph():
    head = DepthHead(**IN, channels=8, loss_weights=dict(l1=1.0))
    losses = head.loss(head(neck_maps(batch=2)), {"depth": torch.zeros(2, 64, 64)})
    assert set(losses) == {"silog", "l1"}
    for value in losses.values():
        assert value.item() == 0 and value.requires_grad
    sum(losses.values()).backward()
    assert head.regressor.weight.grad is not None and torch.isfinite(head.regressor.weight.grad).all()


def test_bad_targets_and_settings_are_errors_that_name_the_values():
    head = DepthHead(**IN, channels=8)
    raw = torch.randn(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"float metres \[B, H, W\] with B=2, got torch.float32 \(64, 64\)"):
        head.loss(raw, {"depth": torch.ones(64, 64)})
    with pytest.raises(ValueError, match=r"float metres .* got torch.int64"):
        head.loss(raw, {"depth": torch.ones(2, 64, 64, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"unknown terms \['berhu'\]; known: \['l1', 'silog'\]"):
        DepthHead(**IN, loss_weights=dict(berhu=1.0))
    with pytest.raises(ValueError, match="every loss weight is 0"):
        DepthHead(**IN, loss_weights=dict(silog=0.0))
    with pytest.raises(ValueError, match="DepthHead: no input level has stride >= out_stride=32"):
        DepthHead(**IN, out_stride=32)
    with pytest.raises(ValueError, match="silog_lambda must be in"):
        DepthHead(**IN, silog_lambda=1.5)


def test_predict_is_exp_of_the_upsampled_log_depth_at_the_input_size():
    head = DepthHead(**IN, channels=8)
    raw = torch.full((2, 1, 16, 16), math.log(3.0))
    raw[1, 0, 8:] = math.log(6.0)
    pred = head.predict(raw, {"img": torch.zeros(2, 3, 64, 64)})
    assert pred.shape == (2, 64, 64) and pred.dtype == torch.float32
    torch.testing.assert_close(pred[0], torch.full((64, 64), 3.0))
    expected = np.exp(upsample_np(raw[:, 0].numpy(), 64, 64))
    torch.testing.assert_close(pred, torch.from_numpy(expected).float())
    assert pred[1, :30].max() == pytest.approx(3.0) and pred[1, 34:].min() == pytest.approx(6.0)


def test_overfits_a_fixed_batch():
    """Trained alone on fixed neck maps, the head memorises two depth maps: SILog falls by >= 90%."""
    torch.manual_seed(0)
    head = DepthHead(**IN, channels=16, loss_weights=dict(silog=1.0, l1=0.1))
    feats = neck_maps(generator=torch.Generator().manual_seed(1))
    rows = torch.linspace(8.0, 6.0, 64)[:, None].expand(64, 64)
    target = torch.stack([rows, rows + 0.5]).clone()
    target[0, 8:40, 12:44] = 3.0
    target[1, 30:60, 4:30] = 2.0
    target[1, 29, 4:30] = 0.0           # a shadow of unknown depth
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = sum(head.loss(head(feats), {"depth": target}).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    head.eval()
    pred = head.predict(head(feats), {"img": torch.zeros(2, 3, 64, 64)})
    valid = target > 0
    assert ((pred - target).abs() / target)[valid].mean() < 0.1


def test_builds_in_a_multitask_model_without_num_classes():
    model = MultiTaskModel(backbone=dict(type="SeedConvNet", channels=(8, 8, 16, 16), out_indices=(1, 2, 3)),
                           neck=dict(type="FPN", out_channels=8), heads={"depth": dict(type="DepthHead", channels=8)},
                           num_classes={"seg": 3})
    assert model.num_classes == {} and model(torch.randn(1, 3, 32, 32))["depth"].shape == (1, 1, 8, 8)


# -- SegHead after moving its branches into mtkd.models.heads.base.fpn_branches ----------------------
SEG_KEYS = [  # recorded from SegHead before the refactor (in_strides 4, 8, 16; channels 8; 3 classes)
    ("branches.0.0.0.weight", (8, 8, 3, 3)), ("branches.0.0.1.weight", (8,)), ("branches.0.0.1.bias", (8,)),
    ("branches.0.0.1.running_mean", (8,)), ("branches.0.0.1.running_var", (8,)),
    ("branches.0.0.1.num_batches_tracked", ()), ("branches.1.0.0.weight", (8, 8, 3, 3)),
    ("branches.1.0.1.weight", (8,)), ("branches.1.0.1.bias", (8,)), ("branches.1.0.1.running_mean", (8,)),
    ("branches.1.0.1.running_var", (8,)), ("branches.1.0.1.num_batches_tracked", ()),
    ("branches.2.0.0.weight", (8, 8, 3, 3)), ("branches.2.0.1.weight", (8,)), ("branches.2.0.1.bias", (8,)),
    ("branches.2.0.1.running_mean", (8,)), ("branches.2.0.1.running_var", (8,)),
    ("branches.2.0.1.num_batches_tracked", ()), ("branches.2.2.0.weight", (8, 8, 3, 3)),
    ("branches.2.2.1.weight", (8,)), ("branches.2.2.1.bias", (8,)), ("branches.2.2.1.running_mean", (8,)),
    ("branches.2.2.1.running_var", (8,)), ("branches.2.2.1.num_batches_tracked", ()),
    ("classifier.weight", (3, 8, 1, 1)), ("classifier.bias", (3,)),
]


def test_seg_head_state_dict_keys_init_and_outputs_are_unchanged():
    torch.manual_seed(0)
    head = SegHead(**IN, num_classes=3, channels=8).eval()
    state = head.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == SEG_KEYS
    assert sum(v.double().abs().sum().item() for v in state.values() if v.is_floating_point()) == pytest.approx(
        204.78358918179947, rel=1e-9)
    gen = torch.Generator().manual_seed(1)
    out = head([torch.randn(2, 8, 32 // s, 32 // s, generator=gen) for s in IN["in_strides"]])
    assert out.shape == (2, 3, 8, 8)
    assert out.double().sum().item() == pytest.approx(14.31347729418485, rel=1e-5)
    assert out.double().abs().sum().item() == pytest.approx(81.73345798916125, rel=1e-5)
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.6001296639442444, 0.13696081936359406, 0.6804354190826416],
                                                      abs=1e-5)


def test_depth_head_shares_the_seg_head_fusion():
    torch.manual_seed(0)
    seg = SegHead(**IN, num_classes=3, channels=8)
    torch.manual_seed(0)
    depth = DepthHead(**IN, channels=8)
    depth_state = depth.state_dict()
    assert [k for k in seg.state_dict() if k.startswith("branches.")] == [
        k for k in depth_state if k.startswith("branches.")]
    assert all(torch.equal(v, depth_state[k]) for k, v in seg.state_dict().items() if k.startswith("branches."))
    assert depth_state["regressor.weight"].shape == (1, 8, 1, 1)
