import pytest

import mtkd  # noqa: F401
from mtkd.config import Config
from mtkd.registry import MODELS
from tools import model_info


def test_prints_params_flops_shapes_and_ratios(capsys):
    assert model_info.main(["configs/demo/student_kd.py", "--teacher-config", "configs/demo/teacher.py",
                            "--input-size", "64", "64"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("teacher", "student "))}
    classes = {"seg": 9, "det": 8, "cls": 8}
    for name, config in (("teacher", "configs/demo/teacher.py"), ("student", "configs/demo/student_scratch.py")):
        model = MODELS.build(Config.fromfile(config).model, num_classes=classes)
        assert float(rows[name][1]) == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6, abs=0.01)
        assert float(rows[name][2]) > 0
    assert "teacher/student:" in out and "det [1, 84, 13]" in out and "synthetic set's" in out
