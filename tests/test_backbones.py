import pytest
import timm
import torch

from mtkd.models import FPN, IdentityNeck, SeedConvNet, TimmBackbone


def test_timm_backbone_exposes_channels_and_strides():
    backbone = TimmBackbone("resnet18", out_indices=(1, 2, 3, 4))
    feats = backbone(torch.randn(1, 3, 64, 64))
    assert backbone.out_channels == [64, 128, 256, 512] and backbone.strides == [4, 8, 16, 32]
    assert [f.shape[1] for f in feats] == backbone.out_channels and [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def test_timm_checkpoint_round_trip_and_errors(tmp_path):
    full = timm.create_model("resnet18", num_classes=10)
    torch.save({"state_dict": full.state_dict()}, tmp_path / "r18.pth")
    backbone = TimmBackbone("resnet18", checkpoint=str(tmp_path / "r18.pth"))
    assert torch.equal(backbone.body.conv1.weight, full.conv1.weight)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        TimmBackbone("resnet18", checkpoint=str(tmp_path / "nope.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        TimmBackbone("resnet18", checkpoint=str(tmp_path / "bad.pth"))
    with pytest.raises(ValueError, match="unknown timm model"):
        TimmBackbone("resnet1800")


def test_seed_convnet_blocks_and_bad_indices():
    net = SeedConvNet(out_indices=(0, 1, 2, 3))
    feats = net(torch.randn(2, 3, 64, 64))
    assert net.strides == [2, 4, 8, 16] and [f.shape[1] for f in feats] == [32, 64, 128, 256]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]
    with pytest.raises(ValueError, match="out_indices"):
        SeedConvNet(out_indices=(2, 5))


def test_fpn_extra_levels_and_identity_neck():
    fpn = FPN(in_channels=[16, 32], in_strides=[8, 16], out_channels=24, num_extra_levels=2)
    outs = fpn([torch.randn(1, 16, 8, 8), torch.randn(1, 32, 4, 4)])
    assert fpn.strides == [8, 16, 32, 64] and [o.shape[-1] for o in outs] == [8, 4, 2, 1]
    assert all(o.shape[1] == 24 for o in outs)
    assert IdentityNeck([16], [8]).out_channels == [16]
    with pytest.raises(ValueError, match="increase strictly"):
        FPN(in_channels=[16, 32], in_strides=[16, 8])
