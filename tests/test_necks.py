"""FPN against the top-down pathway written out with F.conv2d (Lin et al. 2017); IdentityNeck."""
import pytest
import torch
import torch.nn.functional as F

from mtkd.models import FPN, IdentityNeck
from mtkd.registry import MODELS


def conv(x, module, **kwargs):
    return F.conv2d(x, module.weight, module.bias, **kwargs)


def reference_fpn(fpn, feats):
    """Lateral 1x1 convs, nearest 2x top-down sums, 3x3 output convs; extra levels: stride-2 3x3 convs,
    the first on the coarsest output, the next on ReLU of the previous (RetinaNet's P6/P7)."""
    laterals = [conv(f, block[0]) for f, block in zip(feats, fpn.fpn.inner_blocks)]
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        merged.insert(0, lateral + F.interpolate(merged[0], size=lateral.shape[-2:], mode="nearest"))
    outs = [conv(m, block[0], padding=1) for m, block in zip(merged, fpn.fpn.layer_blocks)]
    extra = fpn.fpn.extra_blocks.convs if fpn.fpn.extra_blocks is not None else []
    for index, level in enumerate(extra):
        outs.append(conv(outs[-1] if index == 0 else F.relu(outs[-1]), level, stride=2, padding=1))
    return outs


@pytest.mark.parametrize("num_extra_levels", [0, 2])
def test_fpn_matches_the_top_down_pathway(num_extra_levels):
    torch.manual_seed(0)
    fpn = FPN(in_channels=[8, 16, 24], in_strides=[4, 8, 16], out_channels=12, num_extra_levels=num_extra_levels)
    feats = [torch.randn(2, 8, 15, 13), torch.randn(2, 16, 8, 7), torch.randn(2, 24, 4, 4)]  # ceil sizes of 60x50
    outs = fpn(feats)
    expected = reference_fpn(fpn, feats)
    assert len(outs) == len(expected) == 3 + num_extra_levels
    for out, ref in zip(outs, expected):
        assert out.shape == ref.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert [tuple(o.shape[-2:]) for o in outs] == [(15, 13), (8, 7), (4, 4), (2, 2), (1, 1)][:3 + num_extra_levels]


def test_fpn_declares_its_strides_and_widths():
    fpn = FPN(in_channels=[16, 32], in_strides=[8, 16], out_channels=24, num_extra_levels=2)
    assert fpn.strides == [8, 16, 32, 64] and fpn.out_channels == [24] * 4


def test_fpn_from_the_registry_takes_the_backbone_levels_as_defaults():
    fpn = MODELS.build(dict(type="FPN", out_channels=8), in_channels=[4, 6], in_strides=[8, 16])
    assert isinstance(fpn, FPN) and fpn.strides == [8, 16]
    assert [o.shape[1] for o in fpn([torch.randn(1, 4, 4, 4), torch.randn(1, 6, 2, 2)])] == [8, 8]


def test_fpn_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"in_strides must increase strictly.*\[16, 8\]"):
        FPN(in_channels=[16, 32], in_strides=[16, 8])
    with pytest.raises(ValueError, match="same length"):
        FPN(in_channels=[16, 32], in_strides=[8])
    with pytest.raises(ValueError, match="num_extra_levels must be >= 0, got -1"):
        FPN(in_channels=[16], in_strides=[8], num_extra_levels=-1)
    fpn = FPN(in_channels=[4, 6], in_strides=[8, 16], out_channels=8)
    with pytest.raises(ValueError, match="expects 2 maps .* got 1"):
        fpn([torch.randn(1, 4, 4, 4)])


def test_identity_neck_passes_the_maps_through():
    neck = IdentityNeck(in_channels=[4, 6], in_strides=[8, 16])
    feats = [torch.randn(1, 4, 4, 4), torch.randn(1, 6, 2, 2)]
    outs = neck(feats)
    assert all(a is b for a, b in zip(outs, feats)) and len(outs) == 2
    assert neck.out_channels == [4, 6] and neck.strides == [8, 16] and not list(neck.parameters())
    with pytest.raises(ValueError, match="non-empty"):
        IdentityNeck(in_channels=[], in_strides=[])
