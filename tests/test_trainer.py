"""The engine end to end at tiny size: train, test, distill, resume, interrupt, NaN, DDP, security."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtkd.engine import trainer
from mtkd.cli import run_tool
from mtkd.checkpoint import load_checkpoint
from tools import test as test_tool
from tools import train as train_tool

REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"seg/mIoU", "seg/aAcc", "det/mAP", "det/AP50", "det/AP75", "cls/top1", "cls/top5"}


def tiny_config(tmp_path: Path, base: str, data_root: Path, name: str, extra: str = "", batch: int = 4) -> Path:
    """A config inheriting ``configs/<base>`` with 64 px pipelines, small batches and no loader workers."""
    text = f"""
_base_ = [{str(REPO / 'configs' / base)!r}]
_pipe = [dict(type="Resize", height=64, width=64), dict(type="Normalize")]
train_dataloader = dict(batch_size={batch}, num_workers=0, dataset=dict(data_root={str(data_root)!r},
                        pipeline=[dict(type="HorizontalFlip", p=0.5)] + _pipe))
val_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(data_root={str(data_root)!r}, pipeline=_pipe))
test_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(data_root={str(data_root)!r}, pipeline=_pipe))
train_cfg = dict(max_epochs=1)
param_scheduler = dict(warmup=dict(total_iters=2))
log_interval = 2
{extra}
"""
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path


def run_train(config: Path, work_dir: Path, *options: str) -> int:
    return train_tool.main([str(config), "--work-dir", str(work_dir), "--no-progress", *options])


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_synthetic):
    tmp = tmp_path_factory.mktemp("teacher")
    config = tiny_config(tmp, "demo/teacher.py", tiny_synthetic, "teacher")
    assert run_train(config, tmp / "work") == 0
    return tmp / "work"


def test_teacher_trains_and_tests_with_every_metric_key(teacher_run, tmp_path):
    for name in ("config.py", "log.txt", "metrics.jsonl", "last.pth", "best.pth"):
        assert (teacher_run / name).is_file(), name
    assert list((teacher_run / "tb").iterdir())
    out = tmp_path / "metrics.json"
    assert test_tool.main([str(teacher_run / "best.pth"), "--split", "test", "--out", str(out), "--no-progress",
                           "--show-dir", str(tmp_path / "vis")]) == 0
    metrics = json.loads(out.read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["num_images"] == 8
    assert all(0.0 <= metrics[k] <= 100.0 for k in METRIC_KEYS)
    assert len(list((tmp_path / "vis").glob("*.png"))) == 8
    ckpt = load_checkpoint(teacher_run / "best.pth")
    assert ckpt["model_config"]["type"] == "MultiTaskModel" and ckpt["num_classes"] == {"seg": 9, "det": 8, "cls": 8}


def test_metrics_log_holds_the_epoch_mean_of_every_loss_term(teacher_run):
    record = json.loads((teacher_run / "metrics.jsonl").read_text().splitlines()[-1])
    terms = {k: v for k, v in record.items() if k.startswith("train/") and k != "train/loss"}
    assert set(terms) == {"train/seg/ce", "train/det/box", "train/det/obj", "train/det/cls", "train/cls/ce",
                          "train/depth/silog"}
    # a plain model's loss is the sum of its terms at every step, so the epoch means add up the same way
    assert record["train/loss"] == pytest.approx(sum(terms.values()), rel=1e-5)


def test_scratch_and_distilled_students_train_and_test(teacher_run, tmp_path, tiny_synthetic):
    scratch = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch")
    kd = tiny_config(tmp_path, "demo/student_kd.py", tiny_synthetic, "kd")
    assert run_train(scratch, tmp_path / "scratch") == 0
    assert run_train(kd, tmp_path / "kd", "--cfg-options", f"model.teacher_checkpoint={teacher_run / 'best.pth'}") == 0
    log = (tmp_path / "kd" / "log.txt").read_text()
    assert all(f"{task}/soft" in log for task in ("seg", "det", "cls", "depth"))
    kd_ckpt = load_checkpoint(tmp_path / "kd" / "best.pth")
    assert not any(k.startswith("teacher.") for k in kd_ckpt["state_dict"]) and kd_ckpt["model_config"]["type"] == "MultiTaskModel"
    assert not any("teacher" in k for k in kd_ckpt["train_state_dict"])
    for run in ("scratch", "kd"):
        out = tmp_path / f"{run}.json"
        assert test_tool.main([str(tmp_path / run / "best.pth"), "--out", str(out), "--no-progress"]) == 0
        assert METRIC_KEYS <= set(json.loads(out.read_text()))


def final_weights(work_dir: Path) -> dict:
    return load_checkpoint(work_dir / "last.pth")["state_dict"]


def interrupt_and_resume(config: Path, tmp_path: Path, monkeypatch, at_step: int) -> list[list[dict]]:
    """Train ``config`` straight, then interrupted by SIGINT after step ``at_step`` and resumed; the final
    weights must be equal. Returns both runs' metrics.jsonl records."""
    assert run_train(config, tmp_path / "straight", "--deterministic") == 0

    real_step, calls = trainer._train_step, []

    def step_then_interrupt(run, batch):
        losses = real_step(run, batch)
        calls.append(1)
        if len(calls) == at_step:
            signal.raise_signal(signal.SIGINT)
        return losses

    monkeypatch.setattr(trainer, "_train_step", step_then_interrupt)
    assert run_train(config, tmp_path / "resumed", "--deterministic") == 128 + signal.SIGINT
    assert load_checkpoint(tmp_path / "resumed" / "last.pth")["loop"]["iter"] == at_step
    monkeypatch.setattr(trainer, "_train_step", real_step)
    assert run_train(config, tmp_path / "resumed", "--deterministic", "--resume") == 0
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    return [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("straight", "resumed")]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, tiny_synthetic, monkeypatch):
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch",
                         extra="train_cfg = dict(max_epochs=2)")
    logs = interrupt_and_resume(config, tmp_path, monkeypatch, at_step=3)   # mid-epoch 1 (4 steps per epoch)
    # the epoch means of metrics.jsonl cover the steps before the interrupt too: the same file, line by line
    assert len(logs[0]) == 2 and logs[0] == logs[1]


@pytest.mark.parametrize("kind", ["UncertaintyWeighting", "DWA"])
def test_interrupted_and_resumed_run_with_learned_task_weights_equals_uninterrupted(kind, tmp_path, tiny_synthetic,
                                                                                    monkeypatch):
    """Interrupted mid-epoch 2 of 3: the log-variances (in the optimizer too) or DWA's loss history and the
    epoch's running sums come back with the model, so the weights and metrics.jsonl are the same."""
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch",
                         extra=f"train_cfg = dict(max_epochs=3)\nmodel = dict(task_weighting=dict(type={kind!r}))")
    logs = interrupt_and_resume(config, tmp_path, monkeypatch, at_step=6)
    assert len(logs[0]) == 3 and logs[0] == logs[1]
    weights = [[v for k, v in record.items() if k.startswith("weights/")] for record in logs[0]]
    assert all(len(w) == 4 for w in weights)
    if kind == "DWA":   # 1 in the first two epochs, then from the ratios of epoch 2's losses over epoch 1's
        assert weights[0] == weights[1] == [1.0] * 4 and weights[2] != [1.0] * 4
        assert sum(weights[2]) == pytest.approx(4.0)
    else:   # learned at every step
        assert all(w != 1.0 for w in weights[0]) and weights[0] != weights[1] != weights[2]


def test_nan_loss_in_the_first_epoch_stops_without_writing(tmp_path, tiny_synthetic, monkeypatch, capsys):
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch")
    from mtkd.models.heads.cls import ClsHead
    real_loss, calls = ClsHead.loss, []

    def loss_goes_nan(self, raw, batch):
        calls.append(1)
        out = real_loss(self, raw, batch)
        return {"ce": out["ce"] * float("nan")} if len(calls) == 2 else out

    monkeypatch.setattr(ClsHead, "loss", loss_goes_nan)
    assert run_train(config, tmp_path / "work") == 1
    err = capsys.readouterr().err
    assert "cls/ce" in err and "No checkpoint was written before" in err
    assert not (tmp_path / "work" / "last.pth").exists()


def test_sigkill_while_training_never_breaks_last_pth(tmp_path, tiny_synthetic):
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch",
                         extra="train_cfg = dict(max_epochs=1000, val_interval=1000)")
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(3):
        resume = ["--resume"] if (work / "last.pth").exists() else []
        proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "train.py"), str(config), "--work-dir",
                                 str(work), "--no-progress", *resume], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        start = (work / "last.pth").stat().st_mtime if (work / "last.pth").exists() else 0
        deadline = time.time() + 60
        while time.time() < deadline and not ((work / "last.pth").exists() and (work / "last.pth").stat().st_mtime > start):
            time.sleep(0.05)
        time.sleep(0.1 * attempt)  # kill at different points of later epochs and their checkpoint writes
        proc.kill()
        proc.wait()
        ckpt = load_checkpoint(work / "last.pth")
        assert ckpt["loop"]["epoch"] >= 1


def test_two_process_torchrun_matches_one_process(tmp_path, tiny_synthetic):
    one = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "one", batch=4)
    two = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "two", batch=2)  # same global batch
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
           str(REPO / "tools" / "train.py"), str(two), "--work-dir", str(tmp_path / "two"), "--no-progress"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_train(one, tmp_path / "one") == 0
    two_metrics = json.loads((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[-1])
    one_metrics = json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[-1])
    assert two_metrics["iter"] == one_metrics["iter"] == 4
    for key in METRIC_KEYS:  # BN statistics differ per rank (2 vs 4 images), so equal within a tolerance
        assert abs(two_metrics[key] - one_metrics[key]) < 15.0, key
    # the 2-rank evaluation gathered every image once: one process on the same weights gives the same numbers
    out = tmp_path / "check.json"
    assert test_tool.main([str(tmp_path / "two" / "last.pth"), "--out", str(out), "--no-progress"]) == 0
    single = json.loads(out.read_text())
    for key in METRIC_KEYS:
        assert single[key] == pytest.approx(two_metrics[key], abs=1e-6), key


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_test_tool_refuses_a_checkpoint_that_runs_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = {"state_dict": {}, "model_config": {}, "num_classes": {}, "config": {}, "x": RunsCode(marker)}
    with open(tmp_path / "evil.pth", "wb") as handle:
        torch.save(evil, handle, pickle_module=pickle)
    assert run_tool(test_tool.main, [str(tmp_path / "evil.pth")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("tool", [train_tool, test_tool])
def test_help_explains_every_flag(tool, capsys):
    parser = tool.build_parser()
    for action in parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    with pytest.raises(SystemExit):
        tool.parse_args(["--help"])
    text = capsys.readouterr().out
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text


def test_predict_prints_what_each_task_predicts_and_draws(teacher_run, tiny_synthetic, tmp_path, capsys):
    """One line per image: its name, then each drawer's description in task order (det: the box count; cls:
    class name and probability, the original recipe's columns; depth: its range), and one PNG per image."""
    import shutil

    from tools import predict as predict_tool
    images = tmp_path / "images"
    shutil.copytree(tiny_synthetic / "images" / "test", images)
    (images / "broken.png").write_bytes(b"not a png")   # skipped, and not counted as written
    out_dir = tmp_path / "drawn"
    assert predict_tool.main([str(teacher_run / "best.pth"), str(images), "--out-dir", str(out_dir)]) == 0
    out = capsys.readouterr()
    lines = [line.split("\t") for line in out.out.strip().splitlines()]
    assert len(lines) == 8 and all(len(parts) == 5 for parts in lines)
    from mtkd.data import SHAPES
    for name, boxes, shape, prob, depth in lines:
        assert name.endswith(".png") and boxes.endswith(" boxes") and int(boxes.split()[0]) >= 0
        assert shape in SHAPES and 0.0 <= float(prob) <= 1.0    # names from the checkpoint, not indices
        assert depth.startswith("depth ") and depth.endswith(" m")
    assert len(list(out_dir.glob("*.png"))) == 8 and "wrote 8 of 9 images" in out.err
    assert "skipping" in out.err and "broken.png" in out.err
    ckpt = load_checkpoint(teacher_run / "best.pth")   # names travel in the checkpoint: no dataset needed
    assert predict_tool.class_names(ckpt, {"type": "CocoMultiTaskDataset", "data_root": "/nowhere"})["cls"] == \
        list(SHAPES)


def test_ema_weights_are_evaluated_and_saved(tmp_path, tiny_synthetic):
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "ema",
                         extra="ema = dict(enabled=True, decay=0.5)")
    assert run_train(config, tmp_path / "work") == 0
    ckpt = load_checkpoint(tmp_path / "work" / "last.pth")
    assert "ema_state_dict" in ckpt and "train_state_dict" in ckpt
    ema_weight = ckpt["state_dict"]["backbone.blocks.0.0.weight"]
    raw_weight = ckpt["train_state_dict"]["backbone.blocks.0.0.weight"]
    assert not torch.equal(ema_weight, raw_weight)  # what is saved for testing is the average, not the raw model


def test_early_stopping_after_patience_evaluations_without_a_new_best(tmp_path, tiny_synthetic, monkeypatch):
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "early",
                         extra="train_cfg = dict(max_epochs=6)\ncheckpoint = dict(patience=2)")
    scores = iter([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])  # the first evaluation is the best one
    monkeypatch.setattr(trainer, "primary_score", lambda results, metrics, key="auto": next(scores))
    assert run_train(config, tmp_path / "work") == 0
    lines = (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # best at epoch 1, then 2 evaluations without improvement
    assert load_checkpoint(tmp_path / "work" / "best.pth")["loop"]["best_epoch"] == 1


def test_a_task_the_training_data_cannot_provide_is_an_error_unless_a_teacher_teaches_it(
        teacher_run, tiny_synthetic, tmp_path, capsys):
    no_depth = ["train_dataloader.dataset.targets.depth=None", "val_dataloader.dataset.targets.depth=None"]
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch")
    assert run_train(config, tmp_path / "scratch", "--cfg-options", *no_depth) == 2
    err = capsys.readouterr().err
    assert "heads for tasks ['depth']" in err and "provides only ['seg', 'det', 'cls']" in err
    assert "model.heads.depth=None" in err
    kd = tiny_config(tmp_path, "demo/student_kd.py", tiny_synthetic, "kd")
    assert run_train(kd, tmp_path / "kd", "--cfg-options", *no_depth,
                     f"model.teacher_checkpoint={teacher_run / 'best.pth'}") == 0
    log = (tmp_path / "kd" / "log.txt").read_text()
    assert "tasks ['depth'] have no labels in the training data: learnt from the teacher alone" in log
    assert "the val data has no labels for tasks ['depth']: they are not evaluated" in log


def multi_label_config(tmp_path: Path, base: str, data_root: Path, name: str, model: str) -> Path:
    """``tiny_config`` of ``base`` narrowed to a cls task of multi-hot object categories (image_labels="instances")."""
    path = tmp_path / f"{name}.py"
    path.write_text(f"""
_base_ = [{str(tiny_config(tmp_path, base, data_root, name + '_base'))!r}]
_data = dict(dataset=dict(image_labels="instances", tasks=["cls"]))
train_dataloader = _data
val_dataloader = _data
test_dataloader = _data
{model}
""")
    return path


def test_multi_label_classes_from_instances_train_test_predict_and_distil(tmp_path, tiny_synthetic, capsys):
    """Nothing but ``image_labels="instances"`` makes cls multi-label: sigmoid head, cls/mAP picks best.pth,
    the checkpoint rebuilds the same head (test, predict, as a teacher), and LogitKDLoss distils per class."""
    drop = "dict(seg=None, det=None, depth=None)"
    teacher = multi_label_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "multi",
                                 f"model = dict(heads={drop})")
    assert run_train(teacher, tmp_path / "multi") == 0
    ckpt = load_checkpoint(tmp_path / "multi" / "best.pth")
    assert ckpt["model_config"]["head_args"] == {"cls": {"multi_label": True}} and ckpt["num_classes"] == {"cls": 8}
    out = tmp_path / "multi.json"
    assert test_tool.main([str(tmp_path / "multi" / "best.pth"), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["primary"] == {"cls": "cls/mAP"} and 0 < metrics["cls/mAP"] <= 100 and "cls/top1" not in metrics

    from tools import predict as predict_tool
    capsys.readouterr()
    assert predict_tool.main([str(tmp_path / "multi" / "best.pth"), str(tiny_synthetic / "images" / "test"),
                              "--out-dir", str(tmp_path / "drawn")]) == 0
    from mtkd.data import SHAPES
    for line in capsys.readouterr().out.strip().splitlines():   # name, then every class at >= 0.5 or "-"
        name, classes = line.split("\t")
        assert classes == "-" or all(c.split(":")[0] in SHAPES and float(c.split(":")[1]) >= 0.5
                                     for c in classes.split(","))

    # the plain recipe: the default's logit standardization has no meaning on sigmoids (an error, tested elsewhere)
    kd = multi_label_config(tmp_path, "demo/student_kd_plain.py", tiny_synthetic, "kd", f"""
model = dict(student=dict(heads={drop}), tasks=dict(seg=None, det=None, depth=None),
             teacher_checkpoint={str(tmp_path / 'multi' / 'best.pth')!r})""")
    assert run_train(kd, tmp_path / "kd") == 0
    assert "cls/soft" in (tmp_path / "kd" / "log.txt").read_text()
    assert load_checkpoint(tmp_path / "kd" / "best.pth")["model_config"]["head_args"] == {"cls": {"multi_label": True}}
