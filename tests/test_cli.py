"""mtkd.cli: a user error is one line and exit 2; --debug / MTKD_DEBUG shows the traceback; tools/train.py
writes the synthetic set a config names when it is missing. The tools are run as a user runs them."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mtkd.cli import error_line, run_tool
from mtkd.config import Config, ConfigError

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("train", "test", "predict", "export", "model_info", "browse_dataset", "make_synthetic")


def failing(err):
    def main(argv=None):
        raise err
    return main


def test_a_user_error_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("MTKD_DEBUG", raising=False)
    assert run_tool(failing(ConfigError("config file not found: x.py")), []) == 2
    assert capsys.readouterr().err == "error: config file not found: x.py\n"
    assert run_tool(failing(KeyError("no task 'seg' here")), []) == 2
    assert capsys.readouterr().err.startswith("error: no task 'seg' here\n")   # not quoted like repr
    assert run_tool(lambda argv: 0, []) == 0


def test_debug_flag_or_environment_shows_the_traceback(monkeypatch):
    monkeypatch.delenv("MTKD_DEBUG", raising=False)
    with pytest.raises(ConfigError):
        run_tool(failing(ConfigError("bad key")), ["--debug"])
    monkeypatch.setenv("MTKD_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_tool(failing(FileNotFoundError("annotation file not found: a.json")), [])


def test_a_programming_error_keeps_its_traceback(monkeypatch):
    monkeypatch.delenv("MTKD_DEBUG", raising=False)
    with pytest.raises(RuntimeError):
        run_tool(failing(RuntimeError("shape mismatch")), [])


def test_error_line_names_the_file_of_an_os_error():
    assert error_line(FileNotFoundError(2, "No such file or directory", "a/b.json")) == \
        "error: [Errno 2] No such file or directory: 'a/b.json'"
    assert error_line(ValueError("")) == "error: ValueError"


@pytest.mark.parametrize("tool, args", [
    ("train", ["missing_config.py"]),
    ("test", ["missing.pth"]),
    ("predict", ["missing.pth", "."]),
    ("export", ["missing.pth", "--out", "x.onnx"]),
    ("model_info", ["missing_config.py"]),
    ("browse_dataset", ["missing_config.py"]),
])
def test_every_tool_prints_one_line_for_a_missing_file(tool, args, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")   # predict's image folder exists: its checkpoint does not
    result = subprocess.run([sys.executable, str(REPO / "tools" / f"{tool}.py"), *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    assert "missing" in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_takes_debug(tool, capsys):
    spec = importlib.util.spec_from_file_location(tool, REPO / "tools" / f"{tool}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert "--debug" in capsys.readouterr().out


def load_train_tool():
    spec = importlib.util.spec_from_file_location("train_tool", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_config(tmp_path, out):
    config = tmp_path / "cfg.py"
    config.write_text(f'_base_ = "{REPO}/configs/_base_/datasets/synthetic.py"\n'
                      f'data_root = "{out}"\n'
                      f'train_dataloader = dict(dataset=dict(data_root=data_root))\n'
                      f'val_dataloader = dict(dataset=dict(data_root=data_root))\n'
                      f'test_dataloader = dict(dataset=dict(data_root=data_root))\n'
                      f'synthetic_data = dict(out=data_root, num_train=3, num_val=2, num_test=2, size=32, seed=1)\n')
    return Config.fromfile(config)


def test_train_writes_the_missing_synthetic_set_as_make_synthetic_would(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    tool = load_train_tool()
    cfg = synthetic_config(tmp_path, tmp_path / "gen")
    tool.ensure_synthetic_data(cfg, progress=False)
    assert "python tools/make_synthetic.py --out" in capsys.readouterr().err
    reference = tmp_path / "ref"
    assert load_tool_main("make_synthetic")(["--out", str(reference), "--num-train", "3", "--num-val", "2",
                                             "--num-test", "2", "--size", "32", "--seed", "1", "--no-progress"]) == 0
    for split in ("train", "val", "test"):
        name = f"annotations/instances_{split}.json"
        assert json.loads((tmp_path / "gen" / name).read_text()) == json.loads((reference / name).read_text())
    first = sorted((reference / "images" / "train").iterdir())[0]
    assert (tmp_path / "gen" / "images" / "train" / first.name).read_bytes() == first.read_bytes()
    tool.ensure_synthetic_data(cfg, progress=False)   # present and current: nothing written, nothing said
    assert capsys.readouterr().err == ""


def test_train_under_torchrun_says_the_command_and_never_writes_a_users_root(tmp_path, monkeypatch):
    tool = load_train_tool()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(FileNotFoundError, match=r"make it once before torchrun: python tools/make_synthetic.py"):
        tool.ensure_synthetic_data(synthetic_config(tmp_path, tmp_path / "gen"), progress=False)
    monkeypatch.delenv("WORLD_SIZE")
    cfg = synthetic_config(tmp_path, tmp_path / "gen")
    cfg.train_dataloader.dataset.data_root = cfg.val_dataloader.dataset.data_root = str(tmp_path / "mine")
    cfg.test_dataloader.dataset.data_root = str(tmp_path / "mine")
    tool.ensure_synthetic_data(cfg, progress=False)   # --data-root elsewhere: the user's data, left alone
    assert not (tmp_path / "gen").exists() and not (tmp_path / "mine").exists()


def load_tool_main(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
