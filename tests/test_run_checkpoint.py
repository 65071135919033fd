"""A run's checkpoints never hold a non-finite state, whatever happens during training (issue #20)."""
import os
from pathlib import Path

import pytest
import torch

from mtkd.checkpoint import load_checkpoint
from tests.test_trainer import run_train, tiny_config

EXPLODE = """
param_scheduler = dict(_delete_=True, main=dict(type="MultiStepLR", milestones=[4], gamma=1e9))
train_cfg = dict(max_epochs={epochs})
"""  # 16 images, batch 4: 4 steps an epoch, then the lr is multiplied by 1e9 from the first step of epoch 2


def tensors(path: Path) -> dict:
    return load_checkpoint(path)["state_dict"]


def test_a_nan_stop_keeps_last_pth_at_the_last_finite_state(tmp_path, tiny_synthetic, capsys):
    """The issue's case: the lr explodes in epoch 2; last.pth must stay the end of epoch 1, exactly."""
    one = tiny_config(tmp_path, "demo/teacher.py", tiny_synthetic, "one", extra=EXPLODE.format(epochs=1))
    two = tiny_config(tmp_path, "demo/teacher.py", tiny_synthetic, "two", extra=EXPLODE.format(epochs=2))
    assert run_train(one, tmp_path / "one", "--deterministic") == 0
    capsys.readouterr()
    assert run_train(two, tmp_path / "two", "--deterministic") == 1
    err = capsys.readouterr().err
    assert "is nan" in err or "is inf" in err or "non-finite" in err, err
    if "loss term" in err:  # stopped by the loss check: the advice fits the config
        assert "lower grad_clip.max_norm (now 10.0)" in err and "enable gradient clipping" not in err
        assert "raised the lr" in err and "keep the state of their last save" in err
    kept, expected = load_checkpoint(tmp_path / "two" / "last.pth"), tensors(tmp_path / "one" / "last.pth")
    assert kept["loop"]["epoch"] == 1 and kept["state_dict"].keys() == expected.keys()
    for key, value in kept["state_dict"].items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key   # BatchNorm statistics included
        assert torch.equal(value, expected[key]), key


def test_non_finite_weights_or_statistics_are_never_written(tmp_path, tiny_synthetic, monkeypatch, capsys):
    """A finite loss can hide broken BatchNorm statistics (train mode uses the batch's): not saved."""
    from mtkd.engine import run_checkpoint
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch",
                         extra="train_cfg = dict(max_epochs=2)")
    real_state = run_checkpoint.checkpoint_state

    def inf_statistics_in_epoch_two(run):
        state = real_state(run)
        if run.state.epoch == 2:
            key = next(k for k in state["state_dict"] if k.endswith("running_var"))
            state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("inf"))
        return state

    monkeypatch.setattr(run_checkpoint, "checkpoint_state", inf_statistics_in_epoch_two)
    assert run_train(config, tmp_path / "work") == 1
    err = capsys.readouterr().err
    assert "non-finite values" in err and "running_var" in err and "was not written" in err
    assert load_checkpoint(tmp_path / "work" / "last.pth")["loop"]["epoch"] == 1


def test_temp_files_of_an_interrupted_save_are_removed_at_the_next_start(tmp_path, tiny_synthetic, capsys):
    work = tmp_path / "work"
    work.mkdir()
    stale = work / ".last.pth.k3j9xq2a.tmp"   # what save_checkpoint leaves when killed mid-write
    stale.write_bytes(b"partial")
    keep = work / "notes.tmp"
    keep.write_text("mine")
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch")
    assert run_train(config, work) == 0
    assert not stale.exists() and keep.exists()
    assert "removed 1 temp file(s) of an interrupted save: .last.pth.k3j9xq2a.tmp" in (work / "log.txt").read_text()


def test_the_data_root_is_stored_absolute_and_test_says_how_to_repoint_it(tmp_path, tiny_synthetic, monkeypatch,
                                                                          capsys):
    from tools import test as test_tool
    monkeypatch.chdir(tiny_synthetic.parent)
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch")
    assert run_train(config, tmp_path / "work", "--data-root", tiny_synthetic.name) == 0
    stored = load_checkpoint(tmp_path / "work" / "best.pth")["config"]
    roots = {stored[f"{s}_dataloader"]["dataset"]["data_root"] for s in ("train", "val", "test")}
    assert roots == {str(tiny_synthetic.resolve())}
    monkeypatch.chdir(tmp_path)   # elsewhere: still found
    assert test_tool.main([str(tmp_path / "work" / "best.pth"), "--no-progress"]) == 0
    os.rename(tiny_synthetic, tiny_synthetic.with_name("moved"))
    try:
        assert test_tool.main([str(tmp_path / "work" / "best.pth"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "annotation file not found" in err and "pass --data-root" in err and str(tiny_synthetic) in err
    finally:
        os.rename(tiny_synthetic.with_name("moved"), tiny_synthetic)
