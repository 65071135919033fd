import itertools

import pytest
import torch

from mtkd.config import Config
from mtkd.models import MultiTaskModel, check_distillable
from mtkd.registry import MODELS

CLASSES = {"seg": 5, "det": 3, "cls": 4}
HEADS = {"seg": dict(type="SegHead", channels=16), "det": dict(type="DetHead", strides=(8, 16), channels=16),
         "cls": dict(type="ClsHead")}
BACKBONES = {
    "timm": dict(type="TimmBackbone", name="resnet18", out_indices=(1, 2, 3)),
    "seed": dict(type="SeedConvNet", channels=(8, 16, 32, 32), out_indices=(1, 2, 3)),
}
SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(("seg", "det", "cls"), r)]


def make(backbone="seed", tasks=("seg", "det", "cls"), num_classes=CLASSES, **heads):
    cfg = {t: dict(HEADS[t], **heads.get(t, {})) for t in tasks}
    return MultiTaskModel(backbone=BACKBONES[backbone], neck=dict(type="FPN", out_channels=16), heads=cfg,
                          num_classes=num_classes)


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("tasks", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_output_shapes_and_dtypes_for_every_task_subset(backbone, tasks):
    model = make(backbone, tasks)
    out = model(torch.randn(2, 3, 64, 64), with_feats=True)
    assert set(out) == set(tasks) | {"feats"} and model.tasks == tasks
    expected = {"seg": (2, 5, 16, 16), "det": (2, 8 * 8 + 4 * 4, 5 + 3), "cls": (2, 4)}
    for task in tasks:
        assert tuple(out[task].shape) == expected[task] and out[task].dtype == torch.float32
    assert [f.shape[-1] for f in out["feats"]] == [16, 8, 4]


def batch_for(tasks, b=2):
    batch = {"img": torch.randn(b, 3, 64, 64)}
    if "seg" in tasks:
        batch["seg"] = torch.randint(0, 5, (b, 64, 64))
    if "det" in tasks:
        batch["boxes"] = [torch.tensor([[4.0, 4.0, 30.0, 40.0]])] * b
        batch["labels"] = [torch.tensor([2])] * b
    if "cls" in tasks:
        batch["cls"] = torch.randint(0, 4, (b,))
    return batch


def test_loss_skips_tasks_without_labels_and_forward_loss_sums():
    model = make()
    losses = model.forward_loss(batch_for(("seg", "cls")))
    assert set(losses) == {"seg/ce", "cls/ce", "loss"}
    assert losses["loss"].item() == pytest.approx((losses["seg/ce"] + losses["cls/ce"]).item())
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.heads["det"].parameters())  # kept in the graph (DDP)
    full = model.forward_loss(batch_for(("seg", "det", "cls")))
    terms = {name: value.item() for name, value in full.items() if name != "loss"}
    assert set(terms) == {"seg/ce", "det/box", "det/obj", "det/cls", "cls/ce"}
    assert full["loss"].item() == pytest.approx(sum(terms.values()), rel=1e-6)
    with pytest.raises(ValueError, match="labels for none"):
        model.forward_loss({"img": torch.randn(1, 3, 64, 64)})


def test_loss_equals_each_heads_own_loss_under_task_prefixes():
    model = make()
    batch = batch_for(("det", "cls"))
    outputs = model(batch["img"])
    losses = model.loss(outputs, batch)
    expected = {f"{task}/{name}": value for task in ("det", "cls")
                for name, value in model.heads[task].loss(outputs[task], batch).items()}
    assert losses.keys() == expected.keys()
    assert all(torch.equal(losses[name], expected[name]) for name in expected)


def test_a_task_with_only_part_of_its_labels_is_an_error():
    model = make()
    batch = batch_for(("det", "cls"))
    del batch["labels"]
    with pytest.raises(ValueError, match=r"task 'det': the batch has \['boxes'\] but not \['labels'\]"):
        model.forward_loss(batch)


def test_num_classes_come_from_data_and_disagreement_names_both_numbers():
    assert make(num_classes=CLASSES).num_classes == CLASSES
    with pytest.raises(ValueError, match="num_classes=7 but the data has 4 cls classes"):
        make(cls=dict(num_classes=7))
    with pytest.raises(ValueError, match="num_classes is not set"):
        make(num_classes={"seg": 5, "det": 3})


def test_predict_returns_per_image_results_in_input_pixels():
    model = make().eval()
    batch = batch_for(("seg", "det", "cls"))
    preds = model.predict(model(batch["img"]), batch)
    assert preds["seg"][0].shape == (model.heads["seg"].num_classes, 16, 16)   # logits at stride 4
    assert preds["cls"].shape == (2, 4)
    assert len(preds["det"]) == 2 and set(preds["det"][0]) == {"boxes", "scores", "labels"}


def test_check_distillable_accepts_the_tiny_pair_and_names_each_difference():
    tiny = {name: MODELS.build(Config.fromfile(f"configs/_base_/models/{name}.py").model, num_classes=CLASSES)
            for name in ("teacher_r18-fpn_tiny", "student_seedcnn-fpn_tiny")}
    check_distillable(tiny["teacher_r18-fpn_tiny"], tiny["student_seedcnn-fpn_tiny"])
    teacher = make("timm")
    with pytest.raises(ValueError, match=r"det: strides differs: teacher \[8, 16\], student \[8\]"):
        check_distillable(teacher, make(det=dict(strides=(8,))))
    with pytest.raises(ValueError, match="cls: num_classes differs: teacher 4, student 6"):
        check_distillable(teacher, make(num_classes={**CLASSES, "cls": 6}))
    with pytest.raises(ValueError, match="no head for the student's tasks"):
        check_distillable(make(tasks=("seg",)), make(tasks=("seg", "cls")))


class MeanDepthHead(torch.nn.Module):
    """A task the model has never heard of and that has no classes: mean depth regression."""

    batch_keys = ("depth",)

    def __init__(self, in_channels, in_strides):
        super().__init__()
        self.fc = torch.nn.Linear(in_channels[-1], 1)

    def forward(self, feats):
        return self.fc(feats[-1].mean(dim=(2, 3))).squeeze(1)

    def loss(self, raw, batch):
        return {"l1": (raw - batch["depth"]).abs().mean()}

    def predict(self, raw, batch):
        return raw

    def output_signature(self):
        return {"output": "depth [B]"}


def test_any_task_name_and_a_head_without_classes():
    model = MultiTaskModel(BACKBONES["seed"], dict(type="FPN", out_channels=16),  # positional: backbone, neck, heads
                           {"depth": dict(type=MeanDepthHead), "shape": dict(HEADS["cls"])},
                           num_classes={"shape": 4})
    assert model.tasks == ("depth", "shape") and model.num_classes == {"shape": 4}
    batch = {"img": torch.randn(2, 3, 64, 64), "depth": torch.tensor([1.0, 2.0])}
    assert set(model.forward_loss(batch)) == {"depth/l1", "loss"}  # "shape" (a ClsHead) reads batch["cls"]
    losses = model.forward_loss({**batch, "cls": torch.tensor([0, 3])})
    assert set(losses) == {"depth/l1", "shape/ce", "loss"}
    assert losses["loss"].item() == pytest.approx(losses["depth/l1"].item() + losses["shape/ce"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="'feats' cannot name a task"):
        MultiTaskModel(BACKBONES["seed"], None, {"feats": HEADS["cls"]}, num_classes={"feats": 3})
    with pytest.raises(ValueError, match="at least one head"):
        MultiTaskModel(BACKBONES["seed"], None, {})


def test_identity_neck_is_the_default_and_heads_read_backbone_maps():
    model = MultiTaskModel(backbone=dict(type="SeedConvNet", channels=(8, 16, 32, 64), out_indices=(1, 2, 3)),
                           heads={"cls": HEADS["cls"]}, num_classes=CLASSES)
    assert model.neck.strides == [4, 8, 16] and model.heads["cls"].fc.in_features == 64


def test_check_distillable_refuses_what_is_not_a_multitask_model():
    with pytest.raises(TypeError, match="teacher must be a MultiTaskModel"):
        check_distillable(torch.nn.Linear(2, 2), make())


def test_full_size_pair_is_distillable():
    with torch.device("meta"):  # shapes only: nothing allocated or computed
        full = {name: MODELS.build(Config.fromfile(f"configs/_base_/models/{name}.py").model, num_classes=CLASSES)
                for name in ("teacher_r50-fpn", "student_mbv3-fpn")}
    check_distillable(full["teacher_r50-fpn"], full["student_mbv3-fpn"])


class DictHead(torch.nn.Module):
    """A head that breaks the contract: its forward returns a dict, not one raw tensor."""

    batch_keys = ("seg",)

    def __init__(self, in_channels, in_strides, num_classes):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels[0], num_classes, 1)

    def forward(self, feats):
        return {"logits": self.conv(feats[0])}

    def loss(self, raw, batch):
        return {}

    def predict(self, raw, batch):
        return []

    def output_signature(self):
        return {}


def test_a_head_whose_raw_output_is_not_a_tensor_fails_at_build_naming_it():
    with pytest.raises(TypeError, match="head 'seg' \\(DictHead\\): forward must return one tensor.*got dict"):
        MultiTaskModel(backbone=BACKBONES["seed"], neck=dict(type="FPN", out_channels=16),
                       heads={"seg": dict(type=DictHead)}, num_classes=CLASSES)


def test_a_head_without_the_contract_members_fails_at_build():
    class NoPredict(torch.nn.Module):
        batch_keys = ("seg",)

        def __init__(self, in_channels, in_strides, num_classes):
            super().__init__()

        def forward(self, feats):
            return feats[0]

    with pytest.raises(TypeError, match="head 'seg' \\(NoPredict\\) does not follow the head contract.*predict"):
        MultiTaskModel(backbone=BACKBONES["seed"], neck=dict(type="FPN", out_channels=16),
                       heads={"seg": dict(type=NoPredict)}, num_classes=CLASSES)


def test_the_build_check_runs_on_the_meta_device_and_leaves_weights_alone():
    torch.manual_seed(0)
    model = make()
    assert model._outputs_checked
    assert all(p.device.type == "cpu" for p in model.parameters())
    torch.manual_seed(0)
    plain = make()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
