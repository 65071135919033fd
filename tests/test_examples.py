"""The README's "Add your own task" example (examples/counting) trains, tests and distills end to end.

Everything runs in fresh processes through the command-line tools, as a user would, so the counting
task's parts are registered only through the configs' ``custom_imports`` (and, for tools/test.py and the
Distiller's teacher, through the config stored in the checkpoint).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtkd.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
SMALL = """
_pipe = [dict(type="Resize", height=64, width=64), dict(type="Normalize")]
train_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(data_root={root!r}, pipeline=_pipe))
val_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(data_root={root!r}, pipeline=_pipe))
test_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(data_root={root!r}, pipeline=_pipe))
train_cfg = dict(max_epochs=1)
param_scheduler = dict(warmup=dict(total_iters=2))
"""


def small_config(tmp_path: Path, example: str, root: Path) -> Path:
    path = tmp_path / f"small_{example}"
    path.write_text(f"_base_ = {str(REPO / 'examples/counting' / example)!r}\n" + SMALL.format(root=str(root)))
    return path


def tool(*args) -> subprocess.CompletedProcess:
    """Run ``python tools/<x>.py ...`` from the repository (where ``examples.counting`` is importable)."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def counting_teacher(tmp_path_factory, tiny_synthetic):
    tmp = tmp_path_factory.mktemp("counting")
    tool("tools/train.py", small_config(tmp, "teacher.py", tiny_synthetic), "--work-dir", tmp / "teacher",
         "--no-progress")
    return tmp


def test_the_counting_teacher_trains_and_tests_through_custom_imports(counting_teacher, tiny_synthetic):
    ckpt = load_checkpoint(counting_teacher / "teacher" / "best.pth")
    assert ckpt["config"]["custom_imports"]["imports"] == ["examples.counting.counting"]
    assert ckpt["num_classes"]["count"] == 8 and "heads.count.mlp.2.weight" in ckpt["state_dict"]
    out = counting_teacher / "metrics.json"
    tool("tools/test.py", counting_teacher / "teacher" / "best.pth", "--split", "test", "--out", out,
         "--no-progress", "--show-dir", counting_teacher / "vis")
    metrics = json.loads(out.read_text())
    assert {"count/acc", "count/MAE", "seg/mIoU", "det/mAP", "cls/top1", "depth/delta1"} <= set(metrics)
    assert metrics["primary"]["count"] == "count/acc" and 0 <= metrics["count/acc"] <= 100
    assert len(list((counting_teacher / "vis").glob("*.png"))) == 8
    lines = tool("tools/predict.py", counting_teacher / "teacher" / "best.pth", tiny_synthetic / "images" / "test",
                 "--out-dir", counting_teacher / "pred").stdout.strip().splitlines()
    assert len(lines) == 8 and all(len(line.split("\t")) == 6 for line in lines)   # name + 5 tasks' lines


def test_the_counting_task_is_distilled_into_the_student(counting_teacher, tiny_synthetic, tmp_path):
    teacher = counting_teacher / "teacher" / "best.pth"
    tool("tools/train.py", small_config(tmp_path, "student_kd.py", tiny_synthetic), "--work-dir", tmp_path / "kd",
         "--no-progress", "--cfg-options", f"model.teacher_checkpoint={teacher}")
    log = (tmp_path / "kd" / "log.txt").read_text()
    assert "count/soft" in log and "count/hard" in log
    record = json.loads((tmp_path / "kd" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["train/count/soft"]) and record["train/count/soft"] > 0
    assert "count/acc" in record
    ckpt = load_checkpoint(tmp_path / "kd" / "best.pth")
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"])
    tool("tools/test.py", tmp_path / "kd" / "best.pth", "--no-progress")


def test_counts_follow_the_boxes_that_survive_the_pipeline(tiny_synthetic):
    from examples.counting.counting import ObjectCountTarget  # noqa: F401  (registers the reader)
    from mtkd.data import CocoMultiTaskDataset
    crop = [dict(type="Crop", x_min=0, y_min=0, x_max=32, y_max=32)]
    dataset = CocoMultiTaskDataset(tiny_synthetic, "annotations/instances_val.json", "images/val", pipeline=crop,
                                   targets=dict(count=dict(type="ObjectCountTarget")))
    for index in range(len(dataset)):
        sample = dataset[index]
        expected = torch.bincount(sample["labels"], minlength=len(dataset.category_names)).float()
        assert torch.equal(sample["count"], expected)
