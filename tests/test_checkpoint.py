import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile

import pytest
import torch

from mtkd.checkpoint import CheckpointError, load_checkpoint, remove_stale_temp_files, save_checkpoint


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
    from mtkd.checkpoint import save_checkpoint
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


# -- foreign files: one line naming the file, what it is, what was expected --------------------------------
def write_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")


def write_truncated(path):
    torch.save(minimal(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_truncated_legacy(path):
    torch.save(minimal(), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_safetensors(path):
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))


FOREIGN = {   # case: (how the file is made, what the message must say it is)
    "text": (lambda p: p.write_text("epoch 3: loss 0.41\n"),
             r"it is a text file \(it starts with 'epoch 3: loss 0.41'\), not a torch file"),
    "empty": (lambda p: p.write_bytes(b""), r"it is empty \(0 bytes\)"),
    "zip": (write_zip, r"it is a zip archive but not a torch file \(no <archive>/data.pkl"),
    "truncated": (write_truncated, r"it is truncated: a zip archive"),
    "truncated-legacy": (write_truncated_legacy, r"it is truncated: an old-format torch file"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps({"w": [1.0]})),
               r"it is a plain Python pickle \(pickle.dump, not torch.save\), not a torch file"),
    "binary": (lambda p: p.write_bytes(bytes(range(7, 71))), r"it is binary data \(it starts with bytes 07 08"),
    "safetensors": (write_safetensors, r"it is a safetensors file"),
    "tensor": (lambda p: torch.save(torch.arange(3.0), p),
               r"is a torch file but not an mtkd checkpoint: it holds a Tensor, not a dict"),
    "list": (lambda p: torch.save([torch.arange(3.0)], p),
             r"is a torch file but not an mtkd checkpoint: it holds a list, not a dict"),
    "state-dict": (lambda p: torch.save({"conv.weight": torch.ones(2)}, p),
                   r"is a torch file but not an mtkd checkpoint: missing key\(s\) \['state_dict', 'model_config', "
                   r"'num_classes', 'config'\] \(it looks like a bare model state dict of 1 tensor\(s\): "
                   r"\['conv.weight'\]\)"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")      # torch's note on the plain pickle
@pytest.mark.parametrize("case", list(FOREIGN))
def test_foreign_file_says_which_file_what_it_is_and_what_was_expected(tmp_path, case):
    write, reason = FOREIGN[case]
    path = tmp_path / f"{case}.pth"
    write(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and re.search(reason, message), message
    assert "expected an mtkd checkpoint written by save_checkpoint" in message
    assert "\n" not in message and "refusing" not in message and "run code" not in message


class Custom:
    pass


UNSAFE = {"class": (Custom(), "test_checkpoint.Custom"), "function": (os.system, f"{os.name}.system")}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("case", list(UNSAFE))
def test_torch_file_with_non_tensor_objects_is_refused_and_names_them(tmp_path, case, legacy):
    obj, name = UNSAFE[case]
    path = tmp_path / f"{case}.pth"
    torch.save(minimal(extra=obj), path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"refusing to load {path}: it holds objects other than tensors") and name in message
    assert "could run code" in message and "\n" not in message


# -- temp files of killed writes -----------------------------------------------------------------------------
KILLED_WRITER = textwrap.dedent("""
    import os, sys, time, torch
    from mtkd.checkpoint import save_checkpoint
    def stuck_fsync(fd):                           # the temp file is written; be killed before the rename
        print("writing", flush=True)
        time.sleep(60)
    os.fsync = stuck_fsync
    save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "model_config": {}, "num_classes": {},
                     "config": {}}, sys.argv[1])
""")


def test_remove_stale_temp_files_deletes_only_what_a_killed_save_left(tmp_path):
    save_checkpoint(minimal(epoch=1), tmp_path / "last.pth")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "last.pth")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = [p for p in tmp_path.iterdir() if p.name != "last.pth"]
    assert len(killed) == 1 and killed[0].stat().st_size > 0        # the killed write's temp file is there
    fd, other = tempfile.mkstemp(prefix=".best.pth.", suffix=".tmp", dir=tmp_path)   # as save_checkpoint makes
    os.close(fd)
    keep = [".notes.tmp", "notes.tmp", ".backup.20240101.tmp", ".last.pth.tmp", ".last.pth.abc.tmp",
            ".last.pth.ABCDEFGH.tmp", "last.pth.k3j_9xq2.tmp", ".last.pth.k3j_9xq2.tmp.bak"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    (tmp_path / ".dir.pth.abcdefgh.tmp").mkdir()

    removed = remove_stale_temp_files(tmp_path)
    assert removed == sorted(killed + [tmp_path / os.path.basename(other)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["last.pth", ".dir.pth.abcdefgh.tmp"])
    assert load_checkpoint(tmp_path / "last.pth")["epoch"] == 1
    assert remove_stale_temp_files(tmp_path) == [] and remove_stale_temp_files(tmp_path / "nope") == []
