import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from mtkd.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def minimal(**extra):
    return {"state_dict": {"w": torch.arange(4.0)}, "model_config": {"type": "X"}, "num_classes": {"cls": 3},
            "config": {"seed": 0}, **extra}


def test_round_trip(tmp_path):
    path = save_checkpoint(minimal(epoch=3), tmp_path / "sub" / "last.pth")
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and torch.equal(ckpt["state_dict"]["w"], torch.arange(4.0))
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_missing_file_and_missing_keys(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"state_dict": {}}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing key"):
        load_checkpoint(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_checkpoint(tmp_path / "junk.pth")


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = RunsCode()
    payload.marker = marker
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        torch.save(minimal(evil=payload), handle, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


WRITER = textwrap.dedent("""
    import sys, torch
    from mtkd.engine.checkpoint import save_checkpoint
    path = sys.argv[1]
    i = 0
    while True:
        i += 1
        save_checkpoint({"state_dict": {"w": torch.full((256, 1024), float(i))}, "model_config": {},
                         "num_classes": {}, "config": {}, "iter": i}, path)
        print(i, flush=True)
""")


def test_sigkill_during_writes_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "last.pth"
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()                      # at least one checkpoint is complete
        time.sleep(0.05 + 0.037 * attempt)          # then kill at varying points of later writes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(path)
        assert torch.all(ckpt["state_dict"]["w"] == float(ckpt["iter"]))
