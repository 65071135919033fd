import re

import pytest

import mtkd  # noqa: F401
from mtkd.config import Config
from mtkd.registry import MODELS
from tools import model_info


def run(capsys, *argv):
    """Run the tool; return its printed text and its table rows ``{name: (params M, GFLOPs)}``."""
    assert model_info.main(list(argv)) == 0
    out = capsys.readouterr().out
    rows = {m[1]: (float(m[2]), float(m[3])) for m in re.finditer(r"^(teacher|student|model) +([\d.]+) +([\d.]+)",
                                                                  out, flags=re.MULTILINE)}
    return out, rows


def test_prints_params_flops_shapes_and_ratios(capsys):
    out, rows = run(capsys, "configs/demo/student_kd.py", "--teacher-config", "configs/demo/teacher.py",
                    "--input-size", "64", "64")
    classes = {"seg": 9, "det": 8, "cls": 8}
    for name, config in (("teacher", "configs/demo/teacher.py"), ("student", "configs/demo/student_scratch.py")):
        model = MODELS.build(Config.fromfile(config).model, num_classes=classes)
        assert rows[name][0] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6, abs=0.01)
        assert rows[name][1] > 0
    assert "teacher/student:" in out and "det [1, 84, 13]" in out and "synthetic set's" in out


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
    out, rows = run(capsys, str(tmp_path / "m.py"))
    assert "input 256x192" in out and "cls [1, 5]" in out and "synthetic" not in out
    assert rows["model"][1] == pytest.approx(expected / 1e9, abs=0.006)


@pytest.mark.parametrize("teacher, student, size", [
    ("configs/teacher.py", "configs/multitask_kd.py", "512"),       # full-size pair, as multitask_kd uses it
    ("configs/demo/teacher.py", "configs/demo/student_kd.py", "128"),  # tiny CPU pair
])
def test_student_is_at_least_5x_cheaper_than_its_teacher(capsys, teacher, student, size):
    _, rows = run(capsys, student, "--teacher-config", teacher, "--input-size", size, size)
    (t_params, t_flops), (s_params, s_flops) = rows["teacher"], rows["student"]
    assert t_params >= 5 * s_params and t_flops >= 5 * s_flops, rows


def test_class_counts_from_flags_and_config(tmp_path, capsys):
    (tmp_path / "m.py").write_text(
        "model = dict(type='MultiTaskModel', backbone=dict(type='SeedConvNet', out_indices=(3,)), "
        "heads=dict(cls=dict(type='ClsHead', num_classes=5)))\n")
    out, _ = run(capsys, str(tmp_path / "m.py"), "--input-size", "32", "32", "--num-classes", "cls=5")
    assert "cls [1, 5]" in out
    with pytest.raises(ValueError, match="num_classes=5 but the data has 7"):
        model_info.main([str(tmp_path / "m.py"), "--num-classes", "cls=7"])


def test_help_explains_every_flag():
    text = model_info.build_parser().format_help()
    for flag in ("--input-size", "--num-classes", "--teacher-config", "config"):
        assert flag in text
