"""Several teachers (#16): each task distilled from its own teacher, each teacher run once per batch, frozen and
never saved; specialists with one head; every bad input an error at build time; --resume checks the set."""
import copy
import json
from pathlib import Path

import pytest
import torch

import mtkd.distill  # noqa: F401  (registers the Distiller and losses)
import mtkd.models  # noqa: F401
from mtkd.checkpoint import load_checkpoint, save_checkpoint
from mtkd.cli import run_tool
from mtkd.config import Config
from mtkd.distill.teachers import TeacherSetChanged
from mtkd.engine.config_keys import check_config_keys
from mtkd.registry import MODELS
from tests.test_distiller import NUM_CLASSES, STUDENT, TASKS, make_batch, model_cfg
from tests.test_trainer import run_train, tiny_config
from tools import train as train_tool

REPO = Path(__file__).resolve().parents[1]
SEG_ONLY = dict(model_cfg(channels=(16, 24, 32, 32), fpn=24), heads=dict(seg=dict(type="SegHead", channels=8)))
WIDE = model_cfg(channels=(8, 24, 24, 24), fpn=20)     # another width and neck, all three heads
ASSIGNED = {"seg": "seg_t", "det": "wide_t", "cls": "wide_t"}


def save_teacher(path: Path, cfg: dict, seed: int, num_classes=None) -> Path:
    """A teacher checkpoint as tools/train.py writes it (random weights, BN statistics moved off defaults)."""
    num_classes = dict(num_classes or NUM_CLASSES)
    torch.manual_seed(seed)
    model = MODELS.build(cfg, num_classes=num_classes).train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    return save_checkpoint({"state_dict": model.state_dict(), "model_config": cfg, "num_classes": num_classes,
                            "config": {}}, path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teachers")
    return {"seg_t": save_teacher(folder / "seg.pth", SEG_ONLY, seed=1),
            "wide_t": save_teacher(folder / "wide.pth", WIDE, seed=2),
            "wide_other": save_teacher(folder / "wide_other.pth", WIDE, seed=3),
            "cls5": save_teacher(folder / "cls5.pth", WIDE, seed=4, num_classes=dict(NUM_CLASSES, cls=5))}


def build(ckpts, assigned=ASSIGNED, teachers=None, feature_kd=(), tasks=TASKS, seed=0, **kwargs):
    """A Distiller with named teachers; ``assigned``: task -> teacher name (None: no ``teacher`` key)."""
    torch.manual_seed(seed)
    teachers = teachers or {name: dict(checkpoint=str(ckpts[name])) for name in sorted(set(assigned.values()))}
    tasks = {t: dict(cfg, **({"teacher": assigned[t]} if assigned.get(t) is not None else {}))
             for t, cfg in copy.deepcopy(tasks).items()}
    cfg = dict(type="Distiller", student=kwargs.pop("student", STUDENT), teachers=teachers, tasks=tasks,
               feature_kd=list(feature_kd), **kwargs)
    return MODELS.build(cfg, num_classes=dict(NUM_CLASSES))


def reference_teacher(path):
    """The teacher rebuilt from its checkpoint independently of the Distiller."""
    ckpt = load_checkpoint(path)
    model = MODELS.build(ckpt["model_config"], num_classes=ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


# -- each task gets its own teacher's output -------------------------------------------------------------------
def test_each_task_soft_loss_uses_its_own_teacher(ckpts):
    distiller = build(ckpts).train()
    batch = make_batch()
    losses = distiller(batch)
    refs = {name: reference_teacher(ckpts[name]) for name in ("seg_t", "wide_t")}
    with torch.no_grad():
        student_out = distiller.student(batch["img"])
        outs = {name: model(batch["img"]) for name, model in refs.items()}
    assert not torch.allclose(outs["seg_t"]["seg"], outs["wide_t"]["seg"])  # the two teachers differ
    for task, cfg in TASKS.items():
        loss_fn = MODELS.build(cfg["loss"])
        args = (batch["seg"],) if task == "seg" else ()
        expected = loss_fn(student_out[task], outs[ASSIGNED[task]][task], *args)
        torch.testing.assert_close(losses[f"{task}/soft"].detach(), expected)
    other = MODELS.build(TASKS["seg"]["loss"])(student_out["seg"], outs["wide_t"]["seg"], batch["seg"])
    assert abs(other.item() - losses["seg/soft"].item()) > 1e-4      # the other teacher would give another loss
    assert distiller.task_teacher == ASSIGNED and distiller.distilled_tasks == ["seg", "det", "cls"]
    swapped = build(ckpts, assigned={"seg": "wide_t", "det": "wide_t", "cls": "wide_t"},
                    teachers={"wide_t": dict(checkpoint=str(ckpts["wide_t"]))}).train()
    torch.testing.assert_close(swapped(batch)["seg/soft"].detach(), other)


def test_each_teacher_runs_once_per_batch_frozen_in_eval_under_no_grad(ckpts):
    link = dict(teacher="wide_t", student_level=1, teacher_level=1, loss=dict(type="FeatureKDLoss", mode="mse"))
    distiller = build(ckpts, feature_kd=[link])
    calls = {name: [] for name in distiller.teachers}
    for name, teacher in distiller.teachers.items():
        teacher.register_forward_hook(
            lambda module, args, kwargs, out, name=name: calls[name].append((torch.is_grad_enabled(),
                                                                             kwargs.get("with_feats"))),
            with_kwargs=True)
    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    before = {n: {k: v.clone() for k, v in t.state_dict().items()} for n, t in distiller.teachers.items()}
    distiller.train()
    for seed in (1, 2):
        optimizer.zero_grad()
        distiller(make_batch(seed))["loss"].backward()
        optimizer.step()
    assert calls == {"seg_t": [(False, False)] * 2, "wide_t": [(False, True)] * 2}  # feats only where a link uses them
    for name, teacher in distiller.teachers.items():
        assert all(torch.equal(v, before[name][k]) for k, v in teacher.state_dict().items()), name
        assert not any(m.training for m in teacher.modules()) and not any(p.requires_grad for p in teacher.parameters())
    assert distiller.student.training and distiller.feature_links[0].teacher == "wide_t"
    assert set(distiller.teachers(make_batch()["img"])["wide_t"]) == {"det", "cls", "feats"}


def test_one_teacher_in_the_named_form_needs_no_names_and_matches_the_old_form(ckpts):
    named = build(ckpts, assigned={}, teachers={"wide_t": dict(checkpoint=str(ckpts["wide_t"]), config=WIDE)})
    old = MODELS.build(dict(type="Distiller", student=STUDENT, teacher_checkpoint=str(ckpts["wide_t"]),
                            tasks=copy.deepcopy(TASKS)), num_classes=dict(NUM_CLASSES))
    old.load_state_dict(named.state_dict())
    batch = make_batch()
    a, b = named.eval()(batch), old.eval()(batch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert list(old.teachers) == ["teacher"] and old.teacher is old.teachers["teacher"]
    with pytest.raises(AttributeError, match="2 teachers"):
        build(ckpts).teacher


def test_state_dict_holds_no_teacher_weights_and_loads_strictly(ckpts):
    distiller = build(ckpts)
    state = distiller.state_dict()
    assert state and not any("teacher" in k for k in state)
    other = build(ckpts, seed=7)
    teacher_before = {k: v.clone() for k, v in other.teachers["seg_t"].state_dict().items()}
    other.load_state_dict(dict(state, **{f"teachers.seg_t.{k}": torch.zeros_like(v)
                                         for k, v in teacher_before.items()}), strict=True)
    assert all(torch.equal(v, teacher_before[k]) for k, v in other.teachers["seg_t"].state_dict().items())
    assert all(torch.equal(v, state[k]) for k, v in other.state_dict().items())
    wrapped = torch.nn.ModuleDict({"model": other})
    assert not any("teachers" in k for k in wrapped.state_dict())
    wrapped.load_state_dict({f"model.{k}": v for k, v in state.items()}, strict=True)


# -- errors at build time ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, message", [
    ("unknown", r"tasks.seg.teacher='seg_tt' is not a teacher; the teachers are \['seg_t', 'wide_t'\]; did you mean "
                r"'seg_t'\?"),
    ("no_head", r"teacher 'seg_t' \(.*seg.pth\) has no det head \(its heads: \['seg'\]\) but teaches the "
                r"student's det"),
    ("classes", r"teacher 'cls5' \(.*cls5.pth\) predicts 5 cls classes but the student has 4"),
    ("two", r"tasks.cls.teacher=\['wide_t', 'seg_t'\] names 2 teachers; a task or link is taught by exactly one"),
    ("unused", r"teacher 'wide_other' \(.*wide_other.pth\) teaches nothing"),
    ("unnamed", r"tasks.det names no teacher, and there are 2 \(\['seg_t', 'wide_t'\]\)"),
    ("both_forms", r"either model.teacher_checkpoint .* or model.teachers"),
    ("bad_spec", r"model.teachers.seg_t must be dict\(checkpoint=PATH, config=MODEL_CFG or None\)"),
    ("bad_name", r"'forward' cannot name a teacher"),
    ("link", r"feature_kd\[0\].teacher='nope' is not a teacher"),
    ("grid", r"teacher 'wide_t' .* cannot teach this student(.|\n)*det: strides differs: teacher \[8, 16\], "
             r"student \[8\]"),
    ("missing_ckpt", r"cannot load the checkpoint of teacher 'seg_t', model.teachers.seg_t.checkpoint=.*none.pth"),
])
def test_bad_teacher_configs_are_errors_naming_teacher_and_task(ckpts, case, message):
    teachers = {name: dict(checkpoint=str(ckpts[name])) for name in ("seg_t", "wide_t")}
    kwargs = {}
    if case == "unknown":
        kwargs["assigned"] = dict(ASSIGNED, seg="seg_tt")
    elif case == "no_head":
        kwargs["assigned"] = dict(ASSIGNED, det="seg_t")
    elif case == "classes":
        kwargs["assigned"] = dict(ASSIGNED, cls="cls5")
        teachers["cls5"] = dict(checkpoint=str(ckpts["cls5"]))
    elif case == "two":
        kwargs["assigned"] = dict(ASSIGNED, cls=["wide_t", "seg_t"])
    elif case == "unused":
        teachers["wide_other"] = dict(checkpoint=str(ckpts["wide_other"]))
    elif case == "unnamed":
        kwargs["assigned"] = dict(ASSIGNED, det=None)
    elif case == "both_forms":
        kwargs["teacher_checkpoint"] = str(ckpts["wide_t"])
    elif case == "bad_spec":
        teachers["seg_t"] = dict(teachers["seg_t"], path="x.pth")
    elif case == "bad_name":
        teachers["forward"] = teachers.pop("seg_t")
        kwargs["assigned"] = dict(ASSIGNED, seg="forward")
    elif case == "link":
        kwargs["feature_kd"] = [dict(teacher="nope", student_level=0, teacher_level=0, loss=dict(type="FeatureKDLoss"))]
    elif case == "grid":
        kwargs["student"] = model_cfg(det_strides=(8,))
    elif case == "missing_ckpt":
        teachers["seg_t"] = dict(checkpoint=str(Path(ckpts["seg_t"]).parent / "none.pth"))
    error = Exception if case == "missing_ckpt" else ValueError
    with pytest.raises(error, match=message):
        build(ckpts, teachers=teachers, **kwargs)


def test_a_teacher_of_a_task_without_soft_loss_does_not_count_as_used(ckpts):
    tasks = dict(TASKS, seg=dict(alpha=0.0))   # seg: no soft loss, so seg_t would teach nothing
    with pytest.raises(ValueError, match="teacher 'seg_t' .* teaches nothing"):
        build(ckpts, tasks=tasks)
    distiller = build(ckpts, tasks=dict(TASKS, seg=dict(TASKS["seg"], alpha=0.0)))  # logged soft loss: used
    assert "seg_t" in distiller.teachers and distiller.distilled_tasks == ["det", "cls"]


# -- the teacher set recorded for --resume ------------------------------------------------------------------------
def test_fingerprint_names_each_change_of_the_teacher_set(ckpts, tmp_path):
    distiller = build(ckpts)
    record = json.loads(json.dumps(distiller.teacher_fingerprint()))   # JSON-able
    assert record["seg_t"]["tasks"] == ["seg"] and record["wide_t"]["tasks"] == ["det", "cls"]
    assert len(record["seg_t"]["weights_sha256"]) == 64
    distiller.check_teachers(record)
    distiller.check_teachers(None)   # a checkpoint from before the record: not checked
    moved = tmp_path / "moved.pth"
    moved.write_bytes(Path(ckpts["seg_t"]).read_bytes())
    build(ckpts, teachers={"seg_t": dict(checkpoint=str(moved)), "wide_t": dict(checkpoint=str(ckpts["wide_t"]))}
          ).check_teachers(record)   # same weights elsewhere: the same set
    changed = {"weights": build(ckpts, teachers={"seg_t": dict(checkpoint=str(ckpts["seg_t"])),
                                                 "wide_t": dict(checkpoint=str(ckpts["wide_other"]))}),
               "tasks": build(ckpts, assigned={"seg": "seg_t", "det": "wide_t", "cls": "wide_other"},
                              teachers={n: dict(checkpoint=str(ckpts[n])) for n in ("seg_t", "wide_t", "wide_other")}),
               "removed": build(ckpts, assigned={t: "wide_t" for t in ASSIGNED})}
    expected = {"weights": r"teacher 'wide_t' has other weights: .*wide_other.pth \(sha256 \w{12}\) instead of "
                           r".*wide.pth",
                "tasks": r"teacher 'wide_other' was added \(.*wide_other.pth\); teacher 'wide_t' teaches tasks "
                         r"\['det'\] \(feature KD: False\) instead of \['det', 'cls'\]",
                "removed": r"cannot resume from last.pth: its run had other teachers: teacher 'seg_t' was removed"}
    for key, model in changed.items():
        with pytest.raises(TeacherSetChanged, match=expected[key]):
            model.check_teachers(record, "last.pth")


# -- the shipped specialist configs ------------------------------------------------------------------------------
def test_specialist_configs_have_one_head_and_the_kd_config_teaches_each_task_from_its_own(tmp_path):
    synthetic = {"seg": 9, "det": 8, "cls": 8}
    paths = {}
    for seed, task in enumerate(("seg", "det", "cls", "depth")):
        cfg = Config.fromfile(REPO / f"configs/demo/teacher_{task}.py")
        check_config_keys(cfg)
        model = cfg.model.to_dict()
        assert [t for t, h in model["heads"].items() if h] == [task] and cfg.train_dataloader.dataset.tasks == [task]
        assert model["backbone"] == Config.fromfile(REPO / "configs/demo/teacher.py").model.backbone.to_dict()
        paths[task] = save_teacher(tmp_path / f"{task}.pth", model, seed, synthetic)
    kd = Config.fromfile(REPO / "configs/demo/student_kd_specialists.py")
    check_config_keys(kd)
    base = Config.fromfile(REPO / "configs/demo/student_kd_plain.py").model.tasks.to_dict()
    for task, cfg in kd.model.tasks.to_dict().items():
        assert cfg.pop("teacher") == f"{task}_t" and cfg == base[task]   # same alphas and losses as student_kd_plain.py
    assert {n: s["checkpoint"] for n, s in kd.model.teachers.items()} == {
        f"{t}_t": f"work_dirs/demo/teacher_{t}/best.pth" for t in paths}
    kd.merge_from_dict({f"model.teachers.{t}_t.checkpoint": str(p) for t, p in paths.items()})
    distiller = MODELS.build(kd.model.to_dict(), num_classes=synthetic).train()
    assert distiller.task_teacher == {t: f"{t}_t" for t in paths}
    assert all(list(distiller.teachers[f"{t}_t"].tasks) == [t] for t in paths)
    batch = make_batch(size=64, tasks=("seg", "det", "cls", "depth"))
    batch["seg"] = batch["seg"].clamp(max=8)
    losses = distiller(batch)
    assert torch.isfinite(losses["loss"]) and all(losses[f"{t}/soft"].item() > 0 for t in paths)


# -- end to end: a specialist trained by an ordinary config, then KD from two teachers, resumed --------------
def test_two_teachers_train_resume_and_a_changed_set_is_refused(tmp_path, tiny_synthetic, capsys):
    specialist = tiny_config(tmp_path, "demo/teacher_cls.py", tiny_synthetic, "teacher_cls", batch=8)
    assert run_train(specialist, tmp_path / "teacher_cls") == 0   # an ordinary config with one head
    cls_ckpt = load_checkpoint(tmp_path / "teacher_cls" / "best.pth")
    assert [t for t, h in cls_ckpt["model_config"]["heads"].items() if h] == ["cls"]
    assert cls_ckpt["num_classes"] == {"cls": 8} and "teachers" not in cls_ckpt   # a plain model: no teacher set
    record = json.loads((tmp_path / "teacher_cls" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "cls/top1" in record and not any(k.startswith(("seg/", "det/", "depth/")) for k in record)
    all_cfg = Config.fromfile(REPO / "configs/demo/teacher.py").model.to_dict()
    full = save_teacher(tmp_path / "full.pth", all_cfg, 0, cls_ckpt["num_classes"] | {"seg": 9, "det": 8})
    kd = tiny_config(tmp_path, "demo/student_kd_specialists.py", tiny_synthetic, "kd", batch=8, extra=f"""
model = dict(teachers=dict(_delete_=True, cls_t=dict(checkpoint={str(tmp_path / 'teacher_cls' / 'best.pth')!r}),
                           full_t=dict(checkpoint={str(full)!r})),
             tasks=dict(seg=dict(teacher="full_t"), det=dict(teacher="full_t"), cls=dict(teacher="cls_t"),
                        depth=dict(teacher="full_t")))""")
    assert run_train(kd, tmp_path / "kd") == 0
    assert run_train(kd, tmp_path / "kd", "--resume", "--cfg-options", "train_cfg.max_epochs=2") == 0
    last = load_checkpoint(tmp_path / "kd" / "last.pth")
    assert last["loop"]["epoch"] == 2 and set(last["teachers"]) == {"cls_t", "full_t"}
    assert last["teachers"]["cls_t"]["tasks"] == ["cls"]
    assert last["teachers"]["full_t"]["tasks"] == ["seg", "det", "depth"]
    for key in ("state_dict", "train_state_dict"):
        assert not any("teacher" in k for k in last[key]), key
    log = (tmp_path / "kd" / "log.txt").read_text()
    assert all(f"{task}/soft" in log for task in ("seg", "det", "cls", "depth"))
    swap = ["--resume", "--cfg-options", "train_cfg.max_epochs=3", f"model.teachers.cls_t.checkpoint={full}"]
    with pytest.raises(TeacherSetChanged, match="teacher 'cls_t' has other weights"):
        run_train(kd, tmp_path / "kd", *swap)
    capsys.readouterr()
    argv = [str(kd), "--work-dir", str(tmp_path / "kd"), "--no-progress", *swap]
    assert run_tool(train_tool.main, argv) == 2
    assert capsys.readouterr().err.startswith("error: cannot resume from")
