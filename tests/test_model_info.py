"""tools/model_info.py: printed parameter counts against a direct count, FLOPs against the conv formula,
output shapes against a real forward pass, teacher sources of a Distiller config, flag errors."""
import re
from pathlib import Path

import pytest
import torch

import mtkd  # noqa: F401
from mtkd.config import Config
from mtkd.checkpoint import save_checkpoint
from mtkd.registry import MODELS
from tools import model_info

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = {"seg": 9, "det": 8, "cls": 8}
BASE_MODELS = sorted(p.name for p in (ROOT / "configs/_base_/models").glob("*.py"))


def run(capsys, *argv):
    """Run the tool; return its printed text and its rows ``{name: (params, GFLOPs, outputs text)}``."""
    assert model_info.main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    rows = {m[1]: (int(m[2].replace(",", "")), float(m[3]), m[4])
            for m in re.finditer(r"^(teacher|student|model) +([\d,]+) +([\d.]+)  (.*)$", out, flags=re.MULTILINE)}
    return out, rows


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def shapes_text(model, size):
    """What the tool should print for the outputs: a real forward pass on CPU."""
    with torch.no_grad():
        outputs = model.eval()(torch.zeros(1, 3, *size))
    return ", ".join(f"{task} {list(out.shape)}" for task, out in outputs.items())


@pytest.mark.parametrize("name", BASE_MODELS)
def test_base_model_configs_print_their_parameter_count_and_output_shapes(capsys, name):
    config = ROOT / "configs/_base_/models" / name
    out, rows = run(capsys, config, "--input-size", 64, 64)
    model = MODELS.build(Config.fromfile(config).model, num_classes=SYNTHETIC)
    params, gflops, outputs = rows["model"]
    assert params == num_params(model) and gflops > 0
    assert outputs == shapes_text(model, (64, 64))
    assert "input 64x64" in out and "synthetic set's defaults" in out and "teacher/student" not in out


def test_flops_match_the_conv_formula(tmp_path, capsys):
    """SeedConvNet + GAP + linear: FLOPs = sum 2 * Cin * Cout * 9 * h * w (convs) + 2 * C * K (linear)."""
    cfg = dict(type="MultiTaskModel", backbone=dict(type="SeedConvNet", channels=(16, 32, 64, 128), out_indices=(3,)),
               heads=dict(cls=dict(type="ClsHead", num_classes=5)))
    (tmp_path / "m.py").write_text(f"model = {cfg!r}\ninput_size = (256, 192)\n")
    widths, (h, w), expected = (3, 16, 32, 64, 128), (256, 192), 2 * 128 * 5
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        expected += 2 * c_in * c_out * 9 * h * w
        h, w = h // 2, w // 2
    row = model_info.measure(MODELS.build(cfg), (256, 192))
    assert row["gflops"] * 1e9 == pytest.approx(expected, rel=1e-9) and row["shapes"] == {"cls": (1, 5)}
    out, rows = run(capsys, tmp_path / "m.py")  # input size from the config
    assert "input 256x192" in out and rows["model"][2] == "cls [1, 5]" and "synthetic" not in out
    assert rows["model"][1] == pytest.approx(expected / 1e9, abs=5e-4)


def test_distiller_with_teacher_config_prints_both_and_their_ratios(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no data/synthetic here: the counts come from the synthetic set's defaults
    out, rows = run(capsys, ROOT / "configs/demo/student_kd.py", "--teacher-config", ROOT / "configs/demo/teacher.py",
                    "--input-size", 64, 64)
    for name, config in (("teacher", "configs/demo/teacher.py"), ("student", "configs/demo/student_scratch.py")):
        model = MODELS.build(Config.fromfile(ROOT / config).model, num_classes=SYNTHETIC)
        assert rows[name][0] == num_params(model)
        assert rows[name][2] == "seg [1, 9, 16, 16], det [1, 84, 13], cls [1, 8], depth [1, 1, 16, 16]"
    (t_params, t_flops, _), (s_params, s_flops, _) = rows["teacher"], rows["student"]
    ratio = re.search(r"teacher/student: ([\d.]+)x params, ([\d.]+)x FLOPs", out)
    assert float(ratio[1]) == pytest.approx(t_params / s_params, abs=0.05)
    assert float(ratio[2]) == pytest.approx(t_flops / s_flops, rel=0.02)
    assert "teacher: the model of" in out and "synthetic set's defaults" in out


@pytest.mark.parametrize("teacher, student, size, factor", [
    ("configs/teacher.py", "configs/multitask_kd.py", 512, 5),       # full-size pair, as multitask_kd uses it
    ("configs/demo/teacher.py", "configs/demo/student_kd.py", 64, 4),  # tiny CPU pair (the student at half width)
])
def test_student_is_several_times_cheaper_than_its_teacher(capsys, teacher, student, size, factor):
    _, rows = run(capsys, ROOT / student, "--teacher-config", ROOT / teacher, "--input-size", size, size)
    (t_params, t_flops, _), (s_params, s_flops, _) = rows["teacher"], rows["student"]
    assert t_params >= factor * s_params and t_flops >= factor * s_flops, rows


def distiller_config(tmp_path, **model):
    """A config inheriting configs/demo/student_kd.py with ``model`` overrides."""
    path = tmp_path / "kd.py"
    path.write_text(f"_base_ = {str(ROOT / 'configs/demo/student_kd.py')!r}\nmodel = dict(**{model!r})\n")
    return path


def test_distiller_teacher_written_in_the_config(tmp_path, capsys):
    teacher = dict(type="MultiTaskModel", backbone=dict(type="SeedConvNet", channels=(8, 16, 32, 64)),
                   neck=dict(type="FPN", out_channels=16, num_extra_levels=1),
                   heads=dict(cls=dict(type="ClsHead")))
    out, rows = run(capsys, distiller_config(tmp_path, teacher=teacher), "--input-size", 64, 64)
    assert rows["teacher"][0] == num_params(MODELS.build(teacher, num_classes=SYNTHETIC))
    assert rows["teacher"][2] == "cls [1, 8]" and "teacher/student:" in out


def test_distiller_teacher_from_its_checkpoint_or_skipped(tmp_path, capsys):
    out, rows = run(capsys, distiller_config(tmp_path, teacher_checkpoint=str(tmp_path / "none.pth")),
                    "--input-size", 64, 64)
    assert set(rows) == {"student"} and "teacher/student" not in out
    assert re.search(r"note: teacher skipped \(checkpoint not found: .*none.pth\); pass --teacher-config", out)
    teacher = dict(type="MultiTaskModel", backbone=dict(type="SeedConvNet", channels=(4, 8, 16, 32), out_indices=(3,)),
                   heads=dict(cls=dict(type="ClsHead")))
    save_checkpoint({"state_dict": {}, "model_config": teacher, "num_classes": {"cls": 3}, "config": {}},
                    tmp_path / "teacher.pth")
    out, rows = run(capsys, distiller_config(tmp_path, teacher_checkpoint=str(tmp_path / "teacher.pth")),
                    "--input-size", 64, 64)
    params, _, outputs = rows["teacher"]
    assert params == num_params(MODELS.build(teacher, num_classes={"cls": 3}))
    assert outputs == "cls [1, 3]"  # the classes it was trained with, not the synthetic set's
    assert "teacher: the model config saved in" in out and "teacher.pth" in out


def test_class_counts_from_flags_and_config(tmp_path, capsys):
    (tmp_path / "m.py").write_text(
        "model = dict(type='MultiTaskModel', backbone=dict(type='SeedConvNet', out_indices=(3,)), "
        "heads=dict(cls=dict(type='ClsHead', num_classes=5), seg=dict(type='SegHead', out_stride=16)))\n")
    out, rows = run(capsys, tmp_path / "m.py", "--input-size", 32, 32, "--num-classes", "seg=3")
    assert rows["model"][2] == "cls [1, 5], seg [1, 3, 2, 2]" and "synthetic" not in out
    out, rows = run(capsys, tmp_path / "m.py", "--input-size", 32, 32)
    assert rows["model"][2] == "cls [1, 5], seg [1, 9, 2, 2]" and "{'seg': 9} are the synthetic set's" in out
    with pytest.raises(ValueError, match="num_classes=5 but the data has 7"):
        model_info.main([str(tmp_path / "m.py"), "--num-classes", "cls=7"])


@pytest.mark.parametrize("argv, message", [
    (["--num-classes", "cls=x"], "--num-classes cls='x': expected a positive integer"),
    (["--num-classes", "cls=0"], "--num-classes cls=0: expected a positive integer"),
    (["--num-classes", "dpth=3"], "no task 'dpth' \\(tasks: \\['cls', 'depth', 'det', 'seg'\\]\\)"),
    (["--input-size", "0", "64"], "--input-size must be two positive integers H W, got \\(0, 64\\)"),
])
def test_bad_flags_are_usage_errors_that_say_what_is_wrong(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        model_info.main([str(ROOT / "configs/demo/teacher.py"), *argv])
    assert exit_info.value.code == 2 and re.search(message, capsys.readouterr().err)


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        model_info.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--input-size H W input size for FLOPs", "else 512 512", "--num-classes TASK=N",
                   "from the synthetic set's categories", "--teacher-config", "checkpoint does not exist",
                   "MultiTaskModel or a Distiller"):
        assert phrase in text, phrase


def test_several_teachers_one_row_each_from_config_flag_or_checkpoint(tmp_path, capsys):
    seg = Config.fromfile(ROOT / "configs/demo/teacher_seg.py").model.to_dict()
    cls_teacher = dict(type="MultiTaskModel", heads=dict(cls=dict(type="ClsHead")),
                       backbone=dict(type="SeedConvNet", channels=(4, 8, 16, 32), out_indices=(3,)))
    save_checkpoint({"state_dict": {}, "model_config": cls_teacher, "num_classes": {"cls": 3}, "config": {}},
                    tmp_path / "cls.pth")
    teachers = dict(_delete_=True, seg_t=dict(checkpoint="none.pth", config=seg),
                    det_t=dict(checkpoint=str(tmp_path / "det_missing.pth")),
                    cls_t=dict(checkpoint=str(tmp_path / "cls.pth")))
    config = distiller_config(tmp_path, teacher_checkpoint=None, teachers=teachers)
    assert model_info.main([str(config), "--input-size", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^teacher:seg_t +[\d,]+ +[\d.]+  seg \[1, 9, 16, 16\]$", out, flags=re.MULTILINE)
    assert re.search(r"^teacher:cls_t +[\d,]+ +[\d.]+  cls \[1, 3\]$", out, flags=re.MULTILINE)
    assert "note: teacher:det_t skipped (checkpoint not found" in out and "det_t=CONFIG" in out
    assert "teachers/student" not in out   # not every teacher measured
    assert model_info.main([str(config), "--input-size", "64", "64", "--teacher-config",
                            f"det_t={ROOT / 'configs/demo/teacher_det.py'}"]) == 0
    out = capsys.readouterr().out
    params = {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^(teacher:\w+|student) +([\d,]+) ", out, re.M)}
    det = MODELS.build(Config.fromfile(ROOT / "configs/demo/teacher_det.py").model, num_classes=SYNTHETIC)
    assert params["teacher:det_t"] == num_params(det)
    assert params["teacher:seg_t"] == num_params(MODELS.build(seg, num_classes=SYNTHETIC))
    total = params["teacher:seg_t"] + params["teacher:det_t"] + params["teacher:cls_t"]
    ratio = re.search(r"teachers/student \(3 teachers, each run once per batch\): ([\d.]+)x params", out)
    assert float(ratio[1]) == pytest.approx(total / params["student"], abs=0.05)
    with pytest.raises(SystemExit, match="NAME=CONFIG with NAME one of them"):
        model_info.main([str(config), "--teacher-config", str(ROOT / "configs/demo/teacher_det.py")])
