"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of plain data and tensors:
    state_dict        the inference model's weights (a MultiTaskModel: the student's for a Distiller;
                      never the teacher's)
    model_config      that MultiTaskModel's config dict, so it can be rebuilt (and used as a teacher)
    num_classes       {task: int}, taken from the training data at build time
    class_names       {task: [names]} of the training data (absent from older checkpoints)
    config            the whole merged config as plain dicts/lists (``Config.to_dict()``)
    train_state_dict  the trained module's full state when it differs from ``state_dict`` (a Distiller's
                      student + adapters + task weighting, teachers excluded); for --resume
    epoch, iter, best_metric, optimizer, scheduler, scaler, rng   (training checkpoints; for --resume)
    teachers          a Distiller's teacher set, {name: {checkpoint, weights_sha256, tasks, feature_kd}} (no
                      weights); --resume with other teachers is an error
"""
from __future__ import annotations

import os
import pickle
import pickletools
import re
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from mtkd.config import import_custom_modules
from mtkd.registry import MODELS

REQUIRED_KEYS = ("state_dict", "model_config", "num_classes", "config")
# save_checkpoint's temp files: ``.<target>.<8 chars from mkstemp's alphabet>.tmp``, target a checkpoint name.
TEMP_FILE = re.compile(r"\.(?P<target>.+\.(?:pth|pt|ckpt))\.[a-z0-9_]{8}\.tmp")
_ZIP_MAGIC = b"PK\x03\x04"                                          # torch.save's format since 1.6
_LEGACY_MAGIC = b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")  # older torch.save
_OTHER_FORMATS = {b"\x1f\x8b": "a gzip file", b"\x89HDF": "an HDF5 file (Keras/h5py?)",
                  b"\x93NUMPY": "a NumPy .npy file", b"\x80": "a plain Python pickle (pickle.dump, not torch.save)"}


class CheckpointError(Exception):
    """A checkpoint file that is missing, unreadable, unsafe or lacks what the caller needs."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` through a temp file in the same folder and an atomic rename.

    A process killed at any moment leaves either the old file or the new one, never a torn one (plus,
    when killed mid-write, a temp file that ``remove_stale_temp_files`` deletes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files a killed ``save_checkpoint`` left in ``folder``; return what was removed.

    Only regular files named like ``.last.pth.k3j_9xq2.tmp`` (a .pth/.pt/.ckpt name, mkstemp's 8 random
    characters) go; anything else stays. Call it before this process saves: a writer still running in the
    same folder (another run on the same work dir) would lose its temp file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir()
                   if TEMP_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink())
    for temp in stale:
        temp.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = REQUIRED_KEYS) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``: nothing in the file is executed.

    Raises CheckpointError, one line naming the file, what it is and what was expected, when it is missing,
    empty, truncated, not a torch file, holds objects that the safe unpickler refuses (e.g. code), or is a
    torch file without the ``required`` keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:        # torch raises KeyError, EOFError, OSError... on foreign bytes
        raise CheckpointError(_load_failure(path, err, required)) from err
    _check_contents(ckpt, path, required)
    return ckpt


def _expected(required: tuple[str, ...]) -> str:
    keys = f" holding a dict with the keys {', '.join(required)}" if required else ""
    return f"expected an mtkd checkpoint written by save_checkpoint (torch.save{keys})"


def _load_failure(path: Path, err: Exception, required: tuple[str, ...]) -> str:
    """The one-line message for a file that ``torch.load(weights_only=True)`` failed on."""
    unsafe = _refused_global(err)
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as read_err:
        return f"cannot read checkpoint {path}: {read_err}"
    if head.startswith(_ZIP_MAGIC):
        what = _describe_zip(path, err)
    elif _LEGACY_MAGIC in head[:32]:
        what = "truncated: an old-format torch file cut short" if _legacy_truncated(path, err) else None
    else:
        what = f"{_describe_foreign(head)}, not a torch file" if head else "empty (0 bytes)"
        return f"cannot load checkpoint {path}: it is {what}; {_expected(required)}"
    if what is None and unsafe:
        return (f"refusing to load {path}: it holds objects other than tensors and plain data ({unsafe}), which "
                f"the safe loader torch.load(weights_only=True) refuses because unpickling them could run code")
    what = what or f"a torch file that torch.load cannot read ({type(err).__name__}: {_first_line(err)})"
    return f"cannot load checkpoint {path}: it is {what}; {_expected(required)}"


def _describe_zip(path: Path, err: Exception) -> str | None:
    """What a zip archive is when torch could not load it; None for a complete torch archive."""
    if not zipfile.is_zipfile(path):
        return "truncated: a zip archive (torch's format) whose end is missing; the write or copy was cut short"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as zip_err:
        return f"a damaged zip archive ({zip_err})"
    if not any(name.endswith("/data.pkl") for name in names):
        return f"a zip archive but not a torch file (no <archive>/data.pkl inside; it holds {names[:3]})"
    return None


def _legacy_truncated(path: Path, err: Exception) -> bool:
    """Whether an old-format (pre-zip) torch file ends early: in one of its leading pickles, or in the data.

    The pickles are parsed, never run (pickletools), since a cut-off pickle can look like a refused global.
    """
    with open(path, "rb") as handle:
        try:
            for _ in range(5):          # magic number, protocol, sys info, the object, the storage keys
                for _ in pickletools.genops(handle):
                    pass
        except ValueError:
            return handle.read(1) == b""
    return isinstance(err, (EOFError, struct.error)) or "unexpected EOF" in str(err)


def _describe_foreign(head: bytes) -> str:
    """Name a file that is no torch format from its first bytes."""
    if head[6:8] == b"\0\0" and head[8:10] == b'{"':                # u64 header length, then JSON
        return "a safetensors file (load it with safetensors.torch.load_file)"
    for magic, name in _OTHER_FORMATS.items():
        if head.startswith(magic):
            return name
    try:
        text = head.decode("utf-8", errors="strict" if len(head) < 64 else "ignore")
    except UnicodeDecodeError:
        text = ""
    if text and all(char.isprintable() or char in "\t\r\n" for char in text):
        return f"a text file (it starts with {text.splitlines()[0][:40]!r})"
    return f"binary data (it starts with bytes {head[:8].hex(' ')})"


def _refused_global(err: Exception) -> str | None:
    """``'it references posix.system'`` when the safe unpickler refused a global (class, function); else None."""
    if not isinstance(err, pickle.UnpicklingError):
        return None
    match = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f"it references {match.group(1)}" if match else None


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:200] if lines else "no message"


def _check_contents(ckpt: Any, path: Path, required: tuple[str, ...]) -> None:
    """A torch file that loaded must be a dict with the ``required`` keys."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is a torch file but not an mtkd checkpoint: it holds a "
                              f"{type(ckpt).__name__}, not a dict; {_expected(required)}")
    missing = [key for key in required if key not in ckpt]
    if not missing:
        return
    keys = [str(key) for key in ckpt]
    if ckpt and all(isinstance(value, torch.Tensor) for value in ckpt.values()):
        holds = f"it looks like a bare model state dict of {len(keys)} tensor(s): {keys[:3]}"
    else:
        holds = f"it has {keys[:8]}{' ...' if len(keys) > 8 else ''}"
    raise CheckpointError(f"{path} is a torch file but not an mtkd checkpoint: missing key(s) {missing} "
                          f"({holds}); {_expected(required)}")


def build_model_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike = "<checkpoint>",
                                device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the inference MultiTaskModel a checkpoint describes and load its weights (strict).

    The config's ``custom_imports`` are imported first (a head of the user's own module must be
    registered). Wrong keys or shapes are an error naming the file: the weights must match ``model_config``.
    """
    import_custom_modules(ckpt["config"], f"the config stored in {path}")
    model = MODELS.build(ckpt["model_config"], num_classes=dict(ckpt["num_classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit the model its model_config describes: "
                              f"{str(err).splitlines()[0]}") from err
    return model.to(device).eval()
