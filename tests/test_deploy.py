"""mtkd.deploy without onnx: the metadata helpers, the input-size rules, and the lazy onnx/onnxruntime imports."""
import ast
import json
import sys
from pathlib import Path

import pytest

from mtkd.deploy import DeployError, check_input_size, config_input_size, export_onnx
from mtkd.deploy.metadata import REQUIRED, decode_metadata, encode_metadata, with_input_size

DEPLOY = Path(__file__).resolve().parents[1] / "mtkd" / "deploy"


def loader(*steps) -> dict:
    return {"dataset": {"pipeline": list(steps)}}


def test_input_size_comes_from_the_evaluation_pipeline_then_input_size():
    norm = {"type": "Normalize"}
    assert config_input_size({"test_dataloader": loader({"type": "Resize", "height": 96, "width": 128}, norm),
                              "input_size": 64}) == (96, 128)
    assert config_input_size({"val_dataloader": loader({"type": "LongestMaxSize", "max_size": 100},
                                                       {"type": "PadIfNeeded", "min_height": 128, "min_width": 128})}) == (128, 128)
    assert config_input_size({"test_dataloader": loader(norm), "input_size": 64}) == (64, 64)
    assert config_input_size({"test_dataloader": loader(norm), "input_size": [32, 48]}) == (32, 48)
    assert config_input_size({"test_dataloader": loader(norm)}) is None


def test_an_input_size_off_the_largest_stride_is_an_error_naming_both():
    check_input_size((64, 96), 32)
    with pytest.raises(DeployError, match=r"input size 60x100 is not a multiple of the model's largest stride 32: "
                                          r"use e\.g\. --input-size 64 128"):
        check_input_size((60, 100), 32)


def test_metadata_round_trips_as_json_and_missing_keys_are_named():
    meta = {key: [1, 2] for key in REQUIRED}
    meta["input_size"] = (64, 64)
    props = encode_metadata(meta)
    assert all(isinstance(v, str) for v in props.values()) and json.loads(props["input_size"]) == [64, 64]
    assert decode_metadata({**props, "other": "not json"}, "m.onnx")["other"] == "not json"
    with pytest.raises(DeployError, match=r"m\.onnx has no mtkd metadata: missing \['tasks', 'config'\]"):
        decode_metadata({k: v for k, v in props.items() if k not in ("tasks", "config")}, "m.onnx")
    with pytest.raises(DeployError, match=r"m\.onnx: metadata 'tasks' is not JSON"):
        decode_metadata({**props, "tasks": "{"}, "m.onnx")


def test_onnx_and_onnxruntime_are_imported_only_inside_functions():
    top_level = []
    for path in sorted(DEPLOY.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            top_level += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("onnx", "onnxruntime", "onnxscript")]
    assert not top_level


def test_export_without_onnx_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # import onnx -> ImportError
    with pytest.raises(DeployError, match=r"onnx is not installed.*pip install -e '\.\[onnx\]'"):
        export_onnx(None, "x.onnx", (64, 64))


def test_an_export_at_another_size_gets_pipelines_that_resize_to_it():
    config = {"input_size": (64, 64), "test_dataloader": loader({"type": "Resize", "height": 64, "width": 64}),
              "val_dataloader": loader({"type": "PadIfNeeded", "min_height": 64, "min_width": 64})}
    assert with_input_size(config, (64, 64)) == config
    moved = with_input_size(config, (128, 96))
    assert config_input_size(moved) == (128, 96) and moved["input_size"] == [128, 96]
    assert moved["val_dataloader"]["dataset"]["pipeline"][0] == {"type": "PadIfNeeded", "min_height": 128, "min_width": 96}
    assert config["test_dataloader"]["dataset"]["pipeline"][0]["height"] == 64   # the original is left alone
