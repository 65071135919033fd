"""The Distiller: loss bookkeeping, a frozen teacher that is never saved, alpha/ratio, build-time errors."""
import copy
from pathlib import Path

import pytest
import torch

import mtkd.distill  # noqa: F401  (registers the Distiller and losses)
import mtkd.models  # noqa: F401
from mtkd.config import Config
from mtkd.distill.distiller import Distiller
from mtkd.checkpoint import CheckpointError, save_checkpoint
from mtkd.registry import MODELS

NUM_CLASSES = {"seg": 3, "det": 2, "cls": 4}
TASKS = dict(
    seg=dict(alpha=0.5, ratio=1.0, loss=dict(type="PixelwiseKLLoss", temperature=2.0)),
    det=dict(alpha=0.3, ratio=2.0, loss=dict(type="DetOutputMSELoss", objectness_weighted=True)),
    cls=dict(alpha=0.7, ratio=0.5, loss=dict(type="LogitKDLoss", temperature=3.0)),
)


def model_cfg(channels=(8, 16, 16, 16), fpn=16, det_strides=(8, 16)):
    """A tiny SeedConvNet-FPN MultiTaskModel (neck strides 4, 8, 16) with seg, det and cls heads."""
    det = dict(type="DetHead", channels=8, num_convs=1, strides=det_strides)
    return dict(
        type="MultiTaskModel",
        backbone=dict(type="SeedConvNet", channels=channels, out_indices=(1, 2, 3)),
        neck=dict(type="FPN", out_channels=fpn),
        heads=dict(seg=dict(type="SegHead", channels=8), det=det, cls=dict(type="ClsHead")),
    )


STUDENT = model_cfg()
TEACHER = model_cfg(channels=(16, 24, 32, 32), fpn=24)


def save_teacher(config, path, warm_bn=False):
    """Build ``config`` (seed 0, NUM_CLASSES) and save it as a teacher checkpoint at ``path``; ``warm_bn``
    moves the BN statistics off their defaults first. Returns ``path``."""
    torch.manual_seed(0)
    teacher = MODELS.build(config, num_classes=dict(NUM_CLASSES))
    if warm_bn:
        teacher.train()
        with torch.no_grad():
            for _ in range(2):
                teacher(torch.randn(2, 3, 32, 32))
    save_checkpoint({"state_dict": teacher.state_dict(), "model_config": config,
                     "num_classes": dict(NUM_CLASSES), "config": {}}, path)
    return path


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    """A saved teacher checkpoint (random weights, BN stats moved off their defaults)."""
    return save_teacher(TEACHER, tmp_path_factory.mktemp("teacher") / "teacher.pth", warm_bn=True)


def make_batch(seed=1, size=32, tasks=("seg", "det", "cls")):
    """A labelled batch of two images following ``mtkd.structures``; only ``tasks`` carry labels."""
    gen = torch.Generator().manual_seed(seed)
    batch = {"img": torch.randn(2, 3, size, size, generator=gen),
             "meta": [{"image_id": i, "img_size": (size, size), "ori_size": (size, size)} for i in range(2)]}
    if "seg" in tasks:
        seg = torch.randint(0, NUM_CLASSES["seg"], (2, size, size), generator=gen)
        seg[:, :4] = 255
        batch["seg"] = seg
    if "det" in tasks:
        batch["boxes"] = [torch.tensor([[2.0, 3.0, 20.0, 18.0]]), torch.tensor([[5.0, 5.0, 30.0, 30.0],
                                                                                   [0.0, 10.0, 12.0, 31.0]])]
        batch["labels"] = [torch.tensor([1]), torch.tensor([0, 1])]
    if "cls" in tasks:
        batch["cls"] = torch.tensor([3, 0])
    if "depth" in tasks:
        depth = torch.rand(2, size, size, generator=gen) * 9 + 1
        depth[:, :, :3] = 0  # unknown
        batch["depth"] = depth
    return batch


def build(teacher_ckpt, tasks=TASKS, seed=0, **kwargs):
    """Build a Distiller from a config dict, the way the engine does (class counts as a default arg)."""
    torch.manual_seed(seed)
    num_classes = kwargs.pop("num_classes", dict(NUM_CLASSES))
    student = kwargs.pop("student", STUDENT)
    cfg = dict(type="Distiller", student=student, teacher_checkpoint=str(teacher_ckpt),
               tasks=copy.deepcopy(tasks), **kwargs)
    return MODELS.build(cfg, num_classes=num_classes)


def student_grads(model):
    return {name: p.grad.clone() for name, p in model.student.named_parameters() if p.grad is not None}


# -- the loss dict ---------------------------------------------------------------------------------------
def test_loss_dict_follows_the_formula(teacher_ckpt):
    distiller = build(teacher_ckpt).train()
    batch = make_batch()
    losses = distiller(batch)
    with torch.no_grad():  # independent recomputation from the two models' raw outputs
        student_out = distiller.student(batch["img"])
        teacher_out = distiller.teacher(batch["img"])
        hard_terms = distiller.student.loss(student_out, batch)
    expected_loss = 0.0
    for task, cfg in TASKS.items():
        hard = sum(v for k, v in hard_terms.items() if k.startswith(task + "/"))
        loss_fn = MODELS.build(cfg["loss"])
        args = (batch["seg"],) if task == "seg" else ()
        soft = loss_fn(student_out[task], teacher_out[task], *args)
        torch.testing.assert_close(losses[f"{task}/hard"].detach(), hard)
        torch.testing.assert_close(losses[f"{task}/soft"].detach(), soft)
        total = (1 - cfg["alpha"]) * hard + cfg["alpha"] * soft
        torch.testing.assert_close(losses[f"{task}/total"].detach(), total)
        expected_loss += cfg["ratio"] * total
        assert soft.item() > 0
    torch.testing.assert_close(losses["loss"].detach(), expected_loss)
    assert set(hard_terms) <= set(losses)  # the student's own terms pass through for logging
    assert distiller.forward_loss(batch).keys() == losses.keys()


def test_unlabelled_task_trains_on_its_soft_loss_only(teacher_ckpt):
    distiller = build(teacher_ckpt).eval()
    losses = distiller(make_batch(tasks=("seg", "det")))
    assert losses["cls/hard"].item() == 0.0 and losses["cls/soft"].item() > 0
    torch.testing.assert_close(losses["cls/total"], losses["cls/soft"])
    assert not any(k.startswith("cls/") for k in distiller.student.loss(distiller.student(make_batch()["img"]),
                                                                          make_batch(tasks=("seg",))))
    expected = sum(TASKS[t]["ratio"] * losses[f"{t}/total"] for t in TASKS)
    torch.testing.assert_close(losses["loss"], expected)


def test_task_missing_from_tasks_trains_on_hard_loss_only(teacher_ckpt):
    distiller = build(teacher_ckpt, tasks={"cls": TASKS["cls"]}).eval()
    losses = distiller(make_batch())
    for task in ("seg", "det"):
        torch.testing.assert_close(losses[f"{task}/total"], losses[f"{task}/hard"])
    unlabelled = distiller(make_batch(tasks=("cls",)))
    assert unlabelled["seg/total"].item() == 0.0 and unlabelled["det/total"].item() == 0.0
    unlabelled["loss"].backward()  # every student parameter takes part (DDP needs that), unlabelled heads at 0
    assert all(p.grad is not None for p in distiller.student.parameters())
    assert all(torch.all(p.grad == 0) for p in distiller.student.heads["seg"].parameters())


# -- the frozen teacher ----------------------------------------------------------------------------------
def test_optimizer_step_leaves_teacher_bit_identical_and_in_eval(teacher_ckpt):
    distiller = build(teacher_ckpt, feature_kd=[dict(student_level=0, teacher_level=0, weight=0.5,
                                                     loss=dict(type="FeatureKDLoss", mode="mse"))])
    distiller.train()
    grad_modes = []
    distiller.teacher.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    params = [p for p in distiller.parameters() if p.requires_grad]  # what the engine's optimizer takes
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    teacher_before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in distiller.student.state_dict().items()}
    adapter_before = distiller.feature_losses[0].adapter.weight.detach().clone()
    for seed in (1, 2):
        optimizer.zero_grad()
        distiller(make_batch(seed))["loss"].backward()
        optimizer.step()
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), f"teacher {key} changed"
    assert any("running_mean" in k for k in teacher_before)
    assert grad_modes == [False, False]  # the teacher ran under torch.no_grad()
    assert not distiller.teacher.training and all(not m.training for m in distiller.teacher.modules())
    assert distiller.student.training
    teacher_ids = {id(p) for p in distiller.teacher.parameters()}
    assert not teacher_ids & {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(p.grad is None and not p.requires_grad for p in distiller.teacher.parameters())
    changed = [k for k, v in distiller.student.state_dict().items() if not torch.equal(v, student_before[k])]
    assert len(changed) > len(student_before) // 2
    assert not torch.equal(distiller.feature_losses[0].adapter.weight, adapter_before)


def test_state_dict_never_holds_the_teacher_and_loads_without_it(teacher_ckpt):
    distiller = build(teacher_ckpt, feature_kd=[dict(student_level=1, teacher_level=1,
                                                     loss=dict(type="FeatureKDLoss", mode="cosine"))])
    state = distiller.state_dict()
    assert state and not any(k.startswith("teacher.") for k in state)
    assert any(k.startswith("feature_losses.0.adapter.") for k in state)
    other = build(teacher_ckpt, seed=5, feature_kd=[dict(student_level=1, teacher_level=1,
                                                         loss=dict(type="FeatureKDLoss", mode="cosine"))])
    teacher_before = {k: v.clone() for k, v in other.teacher.state_dict().items()}
    poisoned = dict(state, **{f"teacher.{k}": torch.zeros_like(v) for k, v in teacher_before.items()})
    poisoned["teacher.not_a_weight"] = torch.zeros(1)
    other.load_state_dict(poisoned, strict=True)  # teacher keys given are ignored, none are expected
    other.load_state_dict(state, strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key])
    for key, value in other.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key])
    wrapped = torch.nn.ModuleDict({"model": other})  # nested, as under a wrapper module
    assert not any(".teacher." in k for k in wrapped.state_dict())
    wrapped.load_state_dict({f"model.{k}": v for k, v in state.items()}, strict=True)


def test_teacher_weights_come_from_the_checkpoint(teacher_ckpt):
    distiller = build(teacher_ckpt)
    saved = torch.load(teacher_ckpt, weights_only=True)["state_dict"]
    assert saved.keys() == distiller.teacher.state_dict().keys()
    assert all(torch.equal(v, saved[k]) for k, v in distiller.teacher.state_dict().items())
    assert Distiller.inference_config(dict(type="Distiller", student=STUDENT)) == STUDENT
    assert distiller.inference_model is distiller.student


# -- alpha and ratio -------------------------------------------------------------------------------------
def test_alpha_zero_gives_exactly_the_hard_loss_gradient(teacher_ckpt):
    tasks = {task: dict(cfg, alpha=0.0, ratio=1.0) for task, cfg in TASKS.items()}
    distiller = build(teacher_ckpt, tasks=tasks).train()
    student = copy.deepcopy(distiller.student)
    batch = make_batch()
    losses = distiller(batch)
    losses["loss"].backward()
    hard_terms = student.loss(student(batch["img"]), batch)
    hard_only = sum(sum(v for k, v in hard_terms.items() if k.startswith(t + "/")) for t in student.tasks)
    hard_only.backward()
    reference = {name: p.grad for name, p in student.named_parameters() if p.grad is not None}
    grads = student_grads(distiller)
    assert grads.keys() == reference.keys() and len(grads) > 0
    for name, grad in grads.items():
        assert torch.equal(grad, reference[name]), name
    assert all(losses[f"{t}/soft"].item() > 0 for t in TASKS)  # soft losses are still logged


def test_ratio_scales_a_tasks_gradient(teacher_ckpt):
    only_cls = {task: dict(cfg, ratio=0.0) for task, cfg in TASKS.items()}
    grads = []
    for ratio in (1.0, 3.0):
        tasks = dict(only_cls, cls=dict(TASKS["cls"], ratio=ratio))
        distiller = build(teacher_ckpt, tasks=tasks).train()
        distiller(make_batch())["loss"].backward()
        grads.append(student_grads(distiller))
    assert grads[0].keys() == grads[1].keys() and any("cls" in k for k in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], 3.0 * grad, rtol=1e-5, atol=1e-5 * grad.abs().max().item())


def test_target_reading_soft_loss_gets_the_labels(teacher_ckpt):
    tasks = dict(TASKS, cls=dict(alpha=0.5, loss=dict(type="DKDLoss", temperature=2.0)))
    distiller = build(teacher_ckpt, tasks=tasks).eval()
    batch = make_batch()
    losses = distiller(batch)
    with torch.no_grad():
        expected = MODELS.build(tasks["cls"]["loss"])(distiller.student(batch["img"])["cls"],
                                                      distiller.teacher(batch["img"])["cls"], batch["cls"])
    torch.testing.assert_close(losses["cls/soft"], expected)
    unlabelled = make_batch(tasks=("seg",))  # no cls labels: DKD takes the teacher's top class
    with torch.no_grad():
        teacher_cls = distiller.teacher(unlabelled["img"])["cls"]
        expected = MODELS.build(tasks["cls"]["loss"])(distiller.student(unlabelled["img"])["cls"], teacher_cls,
                                                      teacher_cls.argmax(1))
    torch.testing.assert_close(distiller(unlabelled)["cls/soft"], expected)


# -- errors at build time --------------------------------------------------------------------------------
def test_missing_teacher_checkpoint_says_how_to_train_one(tmp_path):
    missing = tmp_path / "nope" / "best.pth"
    with pytest.raises(CheckpointError) as info:
        build(missing)
    message = str(info.value)
    assert str(missing) in message and "tools/train.py" in message and "teacher_checkpoint" in message


def test_teacher_weights_that_do_not_fit_name_the_file(teacher_ckpt):
    with pytest.raises(CheckpointError) as info:
        build(teacher_ckpt, teacher=model_cfg(channels=(16, 24, 40, 32), fpn=24))
    message = str(info.value)
    assert str(teacher_ckpt) in message and "size mismatch" in message and "tools/train.py" in message


def test_teacher_with_other_class_counts_names_both_numbers(teacher_ckpt):
    with pytest.raises(ValueError, match=r"teacher .* 4 cls classes but the student has 5"):
        build(teacher_ckpt, num_classes=dict(NUM_CLASSES, cls=5))


def test_det_grid_mismatch_is_an_error(teacher_ckpt):
    student = model_cfg(det_strides=(8,))
    with pytest.raises(ValueError, match=r"cannot teach this student(.|\n)*det: strides differs"):
        build(teacher_ckpt, student=student)


def test_bad_tasks_and_feature_kd_are_errors(teacher_ckpt):
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['depth'\]"):
        build(teacher_ckpt, tasks=dict(TASKS, depth=dict(alpha=0.5, loss=dict(type="LogitKDLoss"))))
    with pytest.raises(ValueError, match=r"tasks.cls.alpha must be in \[0, 1\], got 1.5"):
        build(teacher_ckpt, tasks=dict(TASKS, cls=dict(TASKS["cls"], alpha=1.5)))
    with pytest.raises(ValueError, match="alpha=0.5 but no soft loss"):
        build(teacher_ckpt, tasks=dict(TASKS, cls=dict(alpha=0.5)))
    with pytest.raises(ValueError, match="student_level=7"):
        build(teacher_ckpt, feature_kd=[dict(student_level=7, teacher_level=0, loss=dict(type="FeatureKDLoss"))])


# -- multi-label cls: the data decides, the soft loss follows ---------------------------------------------
MULTI_LABEL = {"cls": {"multi_label": True}}


@pytest.fixture(scope="module")
def multi_label_teacher_ckpt(tmp_path_factory):
    """A teacher trained on multi-hot cls labels: its model_config carries head_args, as the engine saves it."""
    return save_teacher(dict(TEACHER, head_args=MULTI_LABEL),
                        tmp_path_factory.mktemp("multi_label_teacher") / "teacher.pth")


def multi_hot_batch():
    batch = make_batch()
    batch["cls"] = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return batch


def test_multi_label_student_learns_from_a_multi_label_teacher_with_logit_kd(multi_label_teacher_ckpt):
    distiller = build(multi_label_teacher_ckpt, head_args=MULTI_LABEL).train()
    assert distiller.teacher.heads["cls"].multi_label and distiller.student.heads["cls"].multi_label
    assert type(distiller.soft_losses["cls"]).__name__ == "MultiLabelKDLoss"   # configured as LogitKDLoss
    assert distiller.soft_losses["cls"].temperature == TASKS["cls"]["loss"]["temperature"]
    batch = multi_hot_batch()
    losses = distiller(batch)
    with torch.no_grad():
        student, teacher = distiller.student(batch["img"])["cls"], distiller.teacher(batch["img"])["cls"]
    expected = MODELS.build(dict(type="MultiLabelKDLoss", temperature=3.0))(student, teacher)
    torch.testing.assert_close(losses["cls/soft"].detach(), expected)
    assert "cls/bce" in losses and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert distiller.student.heads["cls"].fc.weight.grad.abs().sum() > 0
    cfg = dict(type="Distiller", student=STUDENT, teacher_checkpoint="t.pth", tasks={}, head_args=MULTI_LABEL)
    assert Distiller.inference_config(cfg) == dict(STUDENT, head_args=MULTI_LABEL)   # what the checkpoint keeps
    explicit = build(multi_label_teacher_ckpt, head_args=MULTI_LABEL, teacher=TEACHER)   # a teacher config
    assert explicit.teacher.heads["cls"].multi_label   # without head_args: the checkpoint's are taken


def test_single_and_multi_label_heads_cannot_be_distilled_into_each_other(teacher_ckpt, multi_label_teacher_ckpt):
    with pytest.raises(ValueError, match=r"cls: multi_label differs: teacher False, student True"):
        build(teacher_ckpt, head_args=MULTI_LABEL)
    with pytest.raises(ValueError, match=r"cls: multi_label differs: teacher True, student False"):
        build(multi_label_teacher_ckpt)
    dkd = dict(TASKS, cls=dict(alpha=0.5, loss=dict(type="DKDLoss")))
    with pytest.raises(ValueError, match=r"tasks.cls.loss='DKDLoss' does not fit the student's cls head: DKDLoss "
                                         r"compares softmax distributions"):
        build(multi_label_teacher_ckpt, tasks=dkd, head_args=MULTI_LABEL)


# -- the shipped KD configs build and run ----------------------------------------------------------------
@pytest.mark.parametrize("kd_config, teacher_config, num_classes, tasks, size_ratio", [
    ("configs/multitask_kd.py", "configs/teacher.py", {"seg": 4, "det": 3, "cls": 5}, ("seg", "det", "cls", "depth"), 5),
    ("configs/cls_kd_densenet121-seedcnn_imagefolder.py", "configs/teacher_densenet121_imagefolder.py", {"cls": 6},
     ("cls",), 5),
    *[(f"configs/demo/{name}.py", "configs/demo/teacher.py", {"seg": 4, "det": 3, "cls": 5},
       ("seg", "det", "cls", "depth"), 4)
      for name in ("student_kd", "student_kd_plain", "student_kd_ls", "student_dkd_cwd", "student_crosskd",
                   "student_kd_ls_crosskd", "student_kd_ls_t1")],
])
def test_kd_configs_build_from_their_teacher_config_and_run(tmp_path, kd_config, teacher_config, num_classes, tasks,
                                                            size_ratio):
    root = Path(__file__).resolve().parents[1]
    torch.manual_seed(0)
    teacher_model_cfg = Config.fromfile(root / teacher_config).model.to_dict()
    teacher = MODELS.build(teacher_model_cfg, num_classes=num_classes)
    path = save_checkpoint({"state_dict": teacher.state_dict(), "model_config": teacher_model_cfg,
                            "num_classes": num_classes, "config": {}}, tmp_path / "teacher.pth")
    cfg = Config.fromfile(root / kd_config)
    cfg.merge_from_dict({"model.teacher_checkpoint": str(path)})
    distiller = MODELS.build(cfg.model.to_dict(), num_classes=num_classes).train()
    assert set(cfg.model.tasks) == set(tasks) == set(distiller.tasks)
    assert type(distiller.teacher.backbone) is type(teacher.backbone)
    batch = make_batch(size=64, tasks=tasks)
    if "cls" in batch:
        batch["cls"] = batch["cls"] % num_classes["cls"]
    losses = distiller(batch)
    assert torch.isfinite(losses["loss"]) and all(losses[f"{t}/soft"].item() > 0 for t in tasks)
    n_student = sum(p.numel() for p in distiller.student.parameters())
    assert n_student * size_ratio <= sum(p.numel() for p in distiller.teacher.parameters())


def test_imagefolder_pipelines_give_the_input_size():
    from mtkd.data.transforms import Pipeline
    cfg = Config.fromfile(Path(__file__).resolve().parents[1] / "configs/cls_kd_densenet121-seedcnn_imagefolder.py")
    image = torch.randint(0, 256, (300, 400, 3), dtype=torch.uint8).numpy()
    for pipeline in (cfg.train_pipeline, cfg.test_pipeline):
        assert Pipeline(pipeline)(image, seed=0)["image"].shape == (*cfg.input_size, 3)
