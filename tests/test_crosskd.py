"""CrossKD (Wang et al., CVPR 2024): heads' tower / prediction split, the cross-head loss against a hand-built
reference, where its gradient goes, adapters for other widths, and the errors."""
import copy

import pytest
import torch

import mtkd.distill  # noqa: F401  (registers the losses)
import mtkd.models  # noqa: F401
from mtkd.models.heads.base import has_split
from mtkd.registry import MODELS
from mtkd.structures import TOWERS_KEY
from tests.test_distiller import NUM_CLASSES, STUDENT, TASKS, build, make_batch, model_cfg, save_teacher

WIDE_TEACHER = model_cfg(channels=(16, 24, 32, 32), fpn=24)
WIDE_TEACHER["heads"]["det"]["channels"] = 16   # tower widths 16 (det) and 12 (seg) vs the student's 8 and 8
WIDE_TEACHER["heads"]["seg"]["channels"] = 12
CROSS_TASKS = dict(TASKS, det=dict(alpha=0.5, loss=dict(type="CrossKDLoss", loss=dict(type="DetOutputMSELoss"))),
                   seg=dict(alpha=0.5, loss=dict(type="CrossKDLoss", loss=dict(type="PixelwiseKLLoss"))))


@pytest.fixture(scope="module")
def wide_teacher_ckpt(tmp_path_factory):
    return save_teacher(WIDE_TEACHER, tmp_path_factory.mktemp("wide_teacher") / "teacher.pth")


def test_det_and_seg_heads_declare_a_split_that_composes_to_forward():
    torch.manual_seed(0)
    model = MODELS.build(STUDENT, num_classes=dict(NUM_CLASSES)).eval()
    img = torch.randn(2, 3, 32, 32)
    plain = model(img)
    with_towers = model(img, towers=("det", "seg"))
    for task in ("det", "seg"):
        head = model.heads[task]
        assert has_split(head)
        torch.testing.assert_close(with_towers[task], plain[task])
        tower = with_towers[TOWERS_KEY][task]
        assert {branch: {m.shape[1] for m in maps} for branch, maps in tower.items()} == \
               {branch: {width} for branch, width in head.tower_channels().items()}
    assert len(with_towers[TOWERS_KEY]["det"]["reg"]) == len(model.heads["det"].strides)
    assert not has_split(model.heads["cls"]) and TOWERS_KEY not in plain


def test_cross_head_loss_is_the_inner_loss_on_the_teachers_predictors_of_the_adapted_student_towers(
        wide_teacher_ckpt):
    model = build(wide_teacher_ckpt, tasks=CROSS_TASKS)
    assert model.cross_head_tasks == ["seg", "det"]
    batch = make_batch()
    losses = model(batch)
    student_out = model.student(batch["img"], towers=("det",))
    teacher = model.teacher
    with torch.no_grad():
        teacher_raw = teacher(batch["img"])["det"]
    adapters = model.soft_losses["det"].adapters
    assert {b: (a.in_channels, a.out_channels) for b, a in adapters.items()} == {"reg": (8, 16), "cls": (8, 16)}
    adapted = {b: [adapters[b](m) for m in maps] for b, maps in student_out[TOWERS_KEY]["det"].items()}
    expected = MODELS.build(dict(type="DetOutputMSELoss"))(teacher.heads["det"].forward_pred(adapted), teacher_raw)
    torch.testing.assert_close(losses["det/soft"], expected)


def test_identical_towers_of_an_equal_width_teacher_give_zero_loss_through_identity_adapters(tmp_path):
    """Student = teacher (same config and weights): the cross-head prediction is the teacher's own."""
    model = build(save_teacher(STUDENT, tmp_path / "twin.pth"), tasks=CROSS_TASKS)
    model.student.load_state_dict(model.teacher.state_dict())
    model.eval()
    assert all(isinstance(a, torch.nn.Identity) for a in model.soft_losses["det"].adapters.values())
    losses = model(make_batch())
    assert losses["det/soft"].item() == pytest.approx(0.0, abs=1e-10)
    assert losses["seg/soft"].item() == pytest.approx(0.0, abs=1e-6)


def test_kd_gradient_reaches_the_student_towers_and_adapters_but_not_its_predictors_nor_the_teacher(
        wide_teacher_ckpt):
    tasks = dict(det=dict(alpha=1.0, loss=dict(type="CrossKDLoss", loss=dict(type="DetOutputMSELoss"))))
    model = build(wide_teacher_ckpt, tasks=tasks)
    batch = make_batch(tasks=())   # no labels: det learns from the (cross-head) soft loss only
    model(batch)["loss"].backward()
    det = model.student.heads["det"]
    # the predictors see no KD gradient, only the exact zero that keeps them in the graph (DDP)
    assert not det.reg_out.weight.grad.any() and not det.cls_out.weight.grad.any()
    assert det.reg_convs[0].weight.grad.abs().sum() > 0 and det.cls_convs[0].weight.grad.abs().sum() > 0
    assert all(a.weight.grad.abs().sum() > 0 for a in model.soft_losses["det"].adapters.values())
    assert all(p.grad is None for p in model.teacher.parameters())


def test_adapters_train_and_are_saved_and_loaded_with_the_run(wide_teacher_ckpt):
    model = build(wide_teacher_ckpt, tasks=CROSS_TASKS)
    before = copy.deepcopy(model.soft_losses.state_dict())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(make_batch())["loss"].backward()
    optimizer.step()
    state = model.state_dict()
    assert any(k.startswith("soft_losses.det.adapters.reg") for k in state)
    assert not any(k.startswith("teachers.") for k in state)
    changed = [k for k, v in model.soft_losses.state_dict().items() if not torch.equal(v, before[k])]
    assert any("adapters" in k for k in changed)
    again = build(wide_teacher_ckpt, tasks=CROSS_TASKS, seed=5)
    again.load_state_dict(state)
    torch.testing.assert_close(again.soft_losses.state_dict(), model.soft_losses.state_dict())


def test_crosskd_on_a_head_without_the_split_is_an_error_naming_the_head(wide_teacher_ckpt):
    tasks = dict(cls=dict(alpha=0.5, loss=dict(type="CrossKDLoss", loss=dict(type="LogitKDLoss"))))
    with pytest.raises(ValueError, match=r"tasks\.cls.*student's ClsHead does not declare that split"):
        build(wide_teacher_ckpt, tasks=tasks)
    with pytest.raises(ValueError, match="loss must be the config of the soft loss"):
        MODELS.build(dict(type="CrossKDLoss", loss="DetOutputMSELoss"))
    with pytest.raises(ValueError, match="cannot be another CrossKDLoss"):
        MODELS.build(dict(type="CrossKDLoss", loss=dict(type="CrossKDLoss", loss=dict(type="DetOutputMSELoss"))))


def test_crosskd_takes_a_standardized_inner_loss(wide_teacher_ckpt):
    inner = dict(type="DetOutputMSELoss", standardize=True, temperature=2.0)
    model = build(wide_teacher_ckpt, tasks=dict(det=dict(alpha=0.5, loss=dict(type="CrossKDLoss", loss=inner))))
    losses = model(make_batch())
    assert torch.isfinite(losses["det/soft"]) and losses["det/soft"] > 0
