"""Backbones: TimmBackbone against the timm classifier's own stages, SeedConvNet against its blocks written
out with torch.nn.functional, and local weights files (round trip and every way they can be wrong)."""
import pytest
import timm
import torch
import torch.nn.functional as F

from mtkd.models import MultiTaskModel, SeedConvNet, TimmBackbone


@pytest.mark.parametrize("out_indices, channels, strides", [
    ((1, 2, 3, 4), [64, 128, 256, 512], [4, 8, 16, 32]),
    ((2, 4), [128, 512], [8, 32]),
])
def test_timm_backbone_exposes_resnet18_channels_and_strides(out_indices, channels, strides):
    backbone = TimmBackbone("resnet18", out_indices=out_indices)
    feats = backbone(torch.randn(2, 3, 64, 64))
    assert backbone.out_channels == channels and backbone.strides == strides
    assert [tuple(f.shape) for f in feats] == [(2, c, 64 // s, 64 // s) for c, s in zip(channels, strides)]
    assert all(f.dtype == torch.float32 for f in feats)


def test_timm_checkpoint_round_trip_gives_the_classifier_stages(tmp_path):
    """A full resnet18 classifier state dict (fc included) loads; the maps equal its own stages."""
    torch.manual_seed(0)
    full = timm.create_model("resnet18", num_classes=10, pretrained=False).eval()
    torch.save({"state_dict": full.state_dict()}, tmp_path / "r18.pth")
    backbone = TimmBackbone("resnet18", checkpoint=str(tmp_path / "r18.pth")).eval()
    for key, value in backbone.body.state_dict().items():
        assert torch.equal(value, full.state_dict()[key]), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        stages = [full.maxpool(full.act1(full.bn1(full.conv1(x))))]
        for layer in (full.layer1, full.layer2, full.layer3, full.layer4):
            stages.append(layer(stages[-1]))
        for feat, stage in zip(backbone(x), stages[1:]):
            torch.testing.assert_close(feat, stage)


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"model": sd}], ids=["plain", "model-key"])
def test_seed_convnet_checkpoint_round_trip(tmp_path, wrap):
    torch.manual_seed(0)
    four_blocks = SeedConvNet(channels=(4, 8, 16, 32), out_indices=(3,))
    torch.save(wrap(four_blocks.state_dict()), tmp_path / "seed.pth")
    three_blocks = SeedConvNet(channels=(4, 8, 16, 32), out_indices=(1, 2), checkpoint=str(tmp_path / "seed.pth"))
    for key, value in three_blocks.state_dict().items():  # the file's extra block is ignored
        assert torch.equal(value, four_blocks.state_dict()[key]), key


class NotWeights:
    """Pickled as a class reference: torch.load(weights_only=True) must refuse it."""


@pytest.mark.parametrize("content, error, match", [
    (None, FileNotFoundError, "backbone checkpoint not found: .*bad.pth"),
    (b"not a torch file", ValueError, "bad.pth cannot be read as a torch weights file"),
    (NotWeights(), ValueError, "bad.pth cannot be read as a torch weights file.*weights_only=True"),
    ([1, 2], ValueError, "bad.pth holds no state dict"),
    ({"blocks.0.0.weight": torch.zeros(4, 3, 3, 3)}, ValueError, "bad.pth does not match SeedConvNet: 5 keys missing from the file"),
    ({**SeedConvNet(channels=(4,), out_indices=(0,)).state_dict(), "blocks.0.0.weight": torch.zeros(4, 3, 1, 1)},
     ValueError, r"bad.pth .*1 shape mismatches .*blocks.0.0.weight: file \(4, 3, 1, 1\) vs model \(4, 3, 3, 3\)"),
])
def test_bad_checkpoints_are_errors_that_name_the_file(tmp_path, content, error, match):
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(error, match=match):
        SeedConvNet(channels=(4,), out_indices=(0,), checkpoint=str(path))


def test_a_model_config_with_a_missing_backbone_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "weights" / "resnet18_missing.pth"
    with pytest.raises(FileNotFoundError, match="resnet18_missing.pth") as info:
        MultiTaskModel(backbone=dict(type="TimmBackbone", name="resnet18", checkpoint=str(missing)),
                       heads=dict(cls=dict(type="ClsHead")), num_classes={"cls": 3})
    assert "TimmBackbone" in "\n".join(getattr(info.value, "__notes__", []))  # the registry says what it built


def test_unknown_timm_name_is_an_error_with_suggestions():
    with pytest.raises(ValueError, match="unknown timm model name 'resnet1800'; similar: .*resnet18"):
        TimmBackbone("resnet1800")


def reference_seed_block(x, block):
    """Conv3x3 (no bias) -> BatchNorm (running stats) -> ReLU -> MaxPool 2 (ceil mode)."""
    conv, bn = block[0], block[1]
    x = F.conv2d(x, conv.weight, padding=1)
    x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)
    return F.max_pool2d(F.relu(x), 2, ceil_mode=True)


def test_seed_convnet_blocks_match_their_definition_at_odd_sizes():
    torch.manual_seed(0)
    net = SeedConvNet(channels=(4, 8, 16, 32), out_indices=(0, 1, 2, 3)).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial running statistics
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 30, 22)
    feats = net(x)
    assert net.strides == [2, 4, 8, 16] and net.out_channels == [4, 8, 16, 32]
    assert [tuple(f.shape[-2:]) for f in feats] == [(15, 11), (8, 6), (4, 3), (2, 2)]  # ceil(30 / s), ceil(22 / s)
    expected = x
    for feat, block in zip(feats, net.blocks):
        expected = reference_seed_block(expected, block)
        torch.testing.assert_close(feat, expected)


def test_seed_convnet_builds_only_the_blocks_it_returns():
    """Blocks past the last returned one would never get a gradient (DDP refuses that)."""
    net = SeedConvNet(channels=(4, 8, 16, 32), out_indices=(1, 2))
    assert len(net.blocks) == 3 and net.strides == [4, 8] and net.out_channels == [8, 16]
    assert sum(p.numel() for p in net.parameters()) == sum(9 * a * b + 2 * b for a, b in ((3, 4), (4, 8), (8, 16)))
    sum(f.sum() for f in net(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_seed_convnet_bad_settings_are_errors():
    with pytest.raises(ValueError, match=r"out_indices must be increasing block indices in \[0, 3\].*got \[2, 5\]"):
        SeedConvNet(out_indices=(2, 5))
    with pytest.raises(ValueError, match=r"got \[2, 1\]"):
        SeedConvNet(out_indices=(2, 1))
    with pytest.raises(ValueError, match="at least one block width"):
        SeedConvNet(channels=())
