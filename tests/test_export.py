"""ONNX export end to end: raw-output parity with PyTorch, the metadata, evaluation and prediction from the
.onnx (tools/test.py, tools/predict.py) equal to the checkpoint's, and the tools' one-line errors."""
import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mtkd.cli import run_tool  # noqa: E402
from mtkd.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from mtkd.config import Config  # noqa: E402
from mtkd.deploy import DeployError, OnnxModel, build_metadata, export_onnx, read_metadata  # noqa: E402
from mtkd.deploy.onnx import _trace_to_onnx  # noqa: E402
from mtkd.registry import MODELS  # noqa: E402
from tests.test_trainer import REPO, run_train, tiny_config  # noqa: E402
from tools import export as export_tool  # noqa: E402
from tools import predict as predict_tool  # noqa: E402
from tools import test as test_tool  # noqa: E402

CLASSES = {"seg": 9, "det": 8, "cls": 8}
STUDENTS = {  # name: (config file, how to reach the student's model config in it, input size)
    "demo": ("configs/demo/student_kd.py", "model.student", 64),
    "full": ("configs/_base_/models/student_mbv3-fpn.py", "model", 64),
}


def build_student(name: str) -> tuple[torch.nn.Module, dict]:
    """A student MultiTaskModel with random weights and random BatchNorm statistics, and a checkpoint-like dict."""
    path, key, _ = STUDENTS[name]
    cfg = Config.fromfile(REPO / path)
    model_cfg = cfg.to_dict()
    for part in key.split("."):
        model_cfg = model_cfg[part]
    torch.manual_seed(0)
    model = MODELS.build(model_cfg, num_classes=CLASSES).eval()
    for module in model.modules():   # non-trivial statistics: BatchNorm folding must be exact too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    names = {task: [f"{task}-{k}" for k in range(n)] for task, n in CLASSES.items()}
    return model, {"config": cfg.to_dict(), "model_config": model_cfg, "num_classes": CLASSES, "class_names": names}


@pytest.mark.parametrize("dynamic", [False, True], ids=["batch1", "dynamic-batch3"])
@pytest.mark.parametrize("name", list(STUDENTS))
def test_onnxruntime_matches_pytorch_on_every_head(name, dynamic, tmp_path):
    model, ckpt = build_student(name)
    size = (STUDENTS[name][2],) * 2
    path = export_onnx(model, tmp_path / "s.onnx", size, dynamic_batch=dynamic, metadata=build_metadata(ckpt, model, size))
    onnx_model = OnnxModel(path, threads=1)
    batch = 3 if dynamic else 1
    assert onnx_model.session.get_inputs()[0].shape == ["batch" if dynamic else 1, 3, *size]
    img = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(img)
    got = onnx_model(img)
    assert set(got) == set(model.tasks) == {"seg", "det", "cls", "depth"}
    for task in model.tasks:
        assert got[task].shape == expected[task].shape, task
        assert (got[task] - expected[task]).abs().max().item() < 1e-4, task
    assert not model.training   # exporting leaves the model's mode alone


def test_a_multi_label_head_exports_and_the_onnx_model_decodes_it_as_such(tmp_path):
    """The data's head_args (multi-label image classes) travel in the stored model config, so the .onnx
    rebuilds a sigmoid head for decoding: its predictions equal the PyTorch model's."""
    model_cfg = Config.fromfile(REPO / "configs/demo/student_kd.py").to_dict()["model"]["student"]
    model_cfg["head_args"] = {"cls": {"multi_label": True}}    # what the trainer records for image_labels="instances"
    torch.manual_seed(0)
    model = MODELS.build(model_cfg, num_classes=CLASSES).eval()
    ckpt = {"config": {}, "model_config": model_cfg, "num_classes": CLASSES}
    path = export_onnx(model, tmp_path / "ml.onnx", (64, 64), metadata=build_metadata(ckpt, model, (64, 64)))
    onnx_model = OnnxModel(path, threads=1)
    assert onnx_model.heads["cls"].multi_label
    img = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model.predict(model(img), {"img": img})["cls"]
    got = onnx_model.predict(onnx_model(img), {"img": img})["cls"]
    assert (got - expected).abs().max().item() < 1e-5 and abs(float(got.sum()) - 1.0) > 1e-3   # not a softmax


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    model, ckpt = build_student("demo")
    path = tmp_path_factory.mktemp("demo_onnx") / "demo.onnx"
    export_onnx(model, path, (64, 64), metadata=build_metadata(ckpt, model, (64, 64), "demo.pth"))
    return path, model, ckpt


def test_metadata_holds_what_postprocessing_needs(demo_export):
    path, model, ckpt = demo_export
    meta = read_metadata(path)
    assert meta["tasks"] == list(model.tasks) and meta["input_size"] == [64, 64]
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406]) and meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["heads"]["det"]["strides"] == [8, 16, 32] and meta["heads"]["det"]["box_encoding"]
    assert meta["class_names"] == ckpt["class_names"] and meta["num_classes"] == CLASSES
    assert meta["outputs"]["det"] == [1, 84, 13] and meta["input"]["shape"] == [1, 3, 64, 64]
    assert meta["model_config"] == json.loads(json.dumps(ckpt["model_config"]))
    assert meta["config"]["test_dataloader"]["batch_size"] == ckpt["config"]["test_dataloader"]["batch_size"]
    assert meta["mtkd_version"] and meta["source_checkpoint"] == "demo.pth" and meta["opset"] == 17


def test_onnx_model_refuses_another_input_size_and_training(demo_export):
    onnx_model = OnnxModel(demo_export[0], threads=1)
    with pytest.raises(ValueError, match=r"exported for img \[B, 3, 64, 64\], got \[1, 3, 96, 96\]"):
        onnx_model(torch.zeros(1, 3, 96, 96))
    with pytest.raises(RuntimeError, match="cannot be trained"):
        onnx_model.train()
    assert sum(p.numel() for p in onnx_model.parameters()) == sum(p.numel() for p in demo_export[1].parameters())


def test_missing_onnxruntime_says_how_to_install_it(demo_export, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import onnxruntime -> ImportError
    with pytest.raises(DeployError, match=r"onnxruntime is not installed.*pip install -e '\.\[onnx\]'"):
        OnnxModel(demo_export[0])


class Erfinv(torch.nn.Module):
    def forward(self, x):
        return torch.erfinv(torch.tanh(x) * 0.5)   # aten::erfinv has no ONNX symbolic (opset 17)


class WithErfinv(torch.nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head, self.post = head, Erfinv()

    def forward(self, feats):
        return self.post(self.head(feats))


def test_an_op_that_does_not_export_names_its_module(tmp_path):
    model, _ = build_student("demo")
    model.heads["cls"] = WithErfinv(model.heads["cls"])
    with pytest.raises(DeployError, match=r"module heads\.cls\.post \(Erfinv\) fails: .*erfinv"):
        export_onnx(model, tmp_path / "bad.onnx", (64, 64))


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, tiny_synthetic):
    """A tiny scratch student trained for one epoch, exported with tools/export.py (batch 1 and dynamic)."""
    tmp = tmp_path_factory.mktemp("student")
    assert run_train(tiny_config(tmp, "demo/student_scratch.py", tiny_synthetic, "student"), tmp / "work") == 0
    ckpt = tmp / "work" / "best.pth"
    assert export_tool.main([str(ckpt), "--out", str(tmp / "s.onnx")]) == 0
    assert export_tool.main([str(ckpt), "--out", str(tmp / "sd.onnx"), "--dynamic-batch"]) == 0
    return tmp


def test_export_tool_reports_parity_on_real_images(student_run, capsys):
    assert export_tool.main([str(student_run / "work" / "best.pth"), "--out", str(student_run / "again.onnx"),
                             "--dynamic-batch", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "onnx.checker: ok" in out and "4 image(s) of the checkpoint's val split" in out
    diffs = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("  ")]
    assert len(diffs) == 4 and max(diffs) < 1e-4


@pytest.mark.parametrize("onnx_name", ["s.onnx", "sd.onnx"])
def test_onnx_metrics_equal_the_checkpoints(student_run, onnx_name, tmp_path):
    results = {}
    for name, source in (("pth", student_run / "work" / "best.pth"), ("onnx", student_run / onnx_name)):
        out = tmp_path / f"{name}.json"
        assert test_tool.main([str(source), "--split", "test", "--out", str(out), "--no-progress"]) == 0
        results[name] = json.loads(out.read_text())
    keys = [k for k, v in results["pth"].items() if "/" in k and isinstance(v, float)]
    assert len(keys) >= 8 and results["onnx"]["num_images"] == results["pth"]["num_images"] == 8
    for key in keys:
        assert results["onnx"][key] == pytest.approx(results["pth"][key], abs=0.1), key
    assert results["onnx"]["params"] == results["pth"]["params"]


def test_predict_from_the_onnx_writes_every_image(student_run, tiny_synthetic, tmp_path, capsys):
    images = tiny_synthetic / "images" / "test"
    for name, source in (("pth", student_run / "work" / "best.pth"), ("onnx", student_run / "s.onnx")):
        assert predict_tool.main([str(source), str(images), "--out-dir", str(tmp_path / name)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(list((tmp_path / "onnx").glob("*.png"))) == len(list((tmp_path / "pth").glob("*.png"))) == 8
    assert len(lines) == 16 and lines[:8] == lines[8:]   # the same line per image from either model


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_export_errors_are_one_line(student_run, tmp_path, capsys):
    ckpt = student_run / "work" / "best.pth"
    out = ["--out", str(tmp_path / "x.onnx")]
    assert run_tool(export_tool.main, [str(tmp_path / "missing.pth"), *out]) == 2
    assert "error: checkpoint not found" in capsys.readouterr().err
    torch.save({"x": RunsCode(tmp_path / "pwned")}, tmp_path / "evil.pth", pickle_module=pickle)
    assert run_tool(export_tool.main, [str(tmp_path / "evil.pth"), *out]) == 2
    assert "refusing to load" in capsys.readouterr().err and not (tmp_path / "pwned").exists()
    assert run_tool(export_tool.main, [str(ckpt), *out, "--input-size", "60", "64"]) == 2
    assert "input size 60x64 is not a multiple of the model's largest stride 32" in capsys.readouterr().err
    state = load_checkpoint(ckpt)
    state["config"].pop("input_size", None)
    for split in ("val", "test"):
        state["config"][f"{split}_dataloader"]["dataset"]["pipeline"] = [dict(type="Normalize")]
    save_checkpoint(state, tmp_path / "nosize.pth")
    assert run_tool(export_tool.main, [str(tmp_path / "nosize.pth"), *out]) == 2
    assert "pass --input-size H W" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_an_onnx_without_mtkd_metadata_is_refused(tmp_path, tiny_synthetic, capsys):
    path = tmp_path / "plain.onnx"
    path.write_bytes(_trace_to_onnx(torch.nn.Conv2d(3, 4, 3).eval(), (torch.zeros(1, 3, 8, 8),), 17, ["img"]))
    assert run_tool(test_tool.main, [str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} has no mtkd metadata: missing ['mtkd_version', 'tasks'") and "tools/export.py" in err
    images = str(tiny_synthetic / "images" / "test")
    assert run_tool(predict_tool.main, [str(path), images, "--out-dir", str(tmp_path)]) == 2
    assert "has no mtkd metadata" in capsys.readouterr().err
    assert run_tool(test_tool.main, [str(tmp_path / "none.onnx")]) == 2
    assert "ONNX file not found" in capsys.readouterr().err
