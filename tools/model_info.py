"""Parameters, FLOPs and output shapes of a config's model(s): the teacher vs student cost table.

    python tools/model_info.py configs/teacher.py [--input-size 512 512] [--num-classes seg=9 det=8 cls=8]
    python tools/model_info.py configs/multitask_kd.py --teacher-config configs/teacher.py --input-size 512 512
    python tools/model_info.py configs/demo/student_kd_specialists.py --teacher-config seg_t=T_SEG.py det_t=T_DET.py

The config's ``model`` is a MultiTaskModel, or a Distiller with ``student`` and ``teacher`` model dicts
(or ``teacher=None`` and a ``teacher_checkpoint`` whose saved model config is used), or with several
``teachers=dict(name=dict(checkpoint=..., config=...))``: one row per teacher (``teacher:<name>``), each
from its ``config``, else ``--teacher-config name=CONFIG``, else its checkpoint's saved model config. Models
are built on the meta device: nothing is computed or allocated, so full-size models at 512 px take a second.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mtkd.cli import add_debug_argument, run_tool  # noqa: E402
import mtkd  # noqa: E402,F401  registers every component
from mtkd.config import Config, DictAction  # noqa: E402
from mtkd.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from mtkd.data import build_dataset, make_synthetic_dataset  # noqa: E402
from mtkd.registry import MODELS  # noqa: E402

DEFAULT_SIZE = (512, 512)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a config whose model is a MultiTaskModel or a Distiller (teacher + student)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size for FLOPs and output shapes (default: the config's input_size, else "
                             f"{DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]})")
    parser.add_argument("--num-classes", nargs="+", action=DictAction, metavar="TASK=N", default={},
                        help="class count per task, e.g. seg=9 det=8 cls=8 (one that disagrees with a head's "
                             "num_classes in the config is an error); other heads without a count take it from "
                             "the config's training data, or, when that is not on disk, from the synthetic "
                             "set's categories (the output says so)")
    parser.add_argument("--teacher-config", nargs="+", metavar="[NAME=]CONFIG",
                        help="for a Distiller whose teacher comes from a checkpoint: the config the teacher was (or "
                             "will be) trained with; needed when the checkpoint does not exist yet. With several "
                             "teachers (model.teachers) name each: seg_t=configs/demo/teacher_seg.py")
    return add_debug_argument(parser)


def measure(model: torch.nn.Module, size: tuple[int, int]) -> dict:
    """Parameter count, forward GFLOPs at batch 1 (FlopCounterMode; 1 multiply-add = 2 FLOPs), shapes."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        outputs = model(torch.zeros(1, 3, *size, device=device))
    return {"params": sum(p.numel() for p in model.parameters()), "gflops": counter.get_total_flops() / 1e9,
            "shapes": {task: tuple(out.shape) for task, out in outputs.items() if isinstance(out, torch.Tensor)}}


def model_configs(cfg: Config, teacher_config: list[str] | None) -> tuple[dict[str, tuple[dict, dict]], list[str]]:
    """``{name: (model cfg, class counts it was trained with or {})}``: teacher(s) + student, or the model."""
    model = cfg.model.to_dict()
    if "student" not in model:
        return {"model": (model, {})}, []
    found, notes = {}, []
    if model.get("teachers"):
        given = named_teacher_configs(teacher_config or [], list(model["teachers"]))
        for name, spec in model["teachers"].items():
            found_cfg = teacher_source(f"teacher:{name}", (spec or {}).get("config"), given.get(name),
                                       (spec or {}).get("checkpoint"), notes)
            if found_cfg is not None:
                found[f"teacher:{name}"] = found_cfg
    else:
        if teacher_config and len(teacher_config) > 1:
            raise SystemExit("--teacher-config: this config has one teacher (model.teacher_checkpoint); "
                             "give one config")
        given = teacher_config[0].removeprefix("teacher=") if teacher_config else None
        found_cfg = teacher_source("teacher", model.get("teacher"), given, model.get("teacher_checkpoint"), notes)
        if found_cfg is not None:
            found["teacher"] = found_cfg
    found["student"] = (model["student"], {})
    return found, notes


def named_teacher_configs(items: list[str], names: list[str]) -> dict[str, str]:
    """``--teacher-config NAME=CONFIG ...`` as ``{name: config path}``; an unnamed or unknown name is an error."""
    given = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in names:
            raise SystemExit(f"--teacher-config {item}: this config has several teachers {names}; pass "
                             f"NAME=CONFIG with NAME one of them")
        given[name] = path
    return given


def teacher_source(row: str, config: dict | None, config_file: str | None, checkpoint: str | None,
                   notes: list[str]) -> tuple[dict, dict] | None:
    """A teacher's (model cfg, class counts): its config in the Distiller's, else the model of
    ``config_file``, else its checkpoint's saved model config; None (with a note) when there is none."""
    if config:
        return config, {}
    if config_file:
        teacher = Config.fromfile(config_file).model.to_dict()
        if "student" in teacher:
            raise SystemExit(f"--teacher-config {config_file} describes a Distiller; pass the config the "
                             f"teacher was trained with (its model is a MultiTaskModel)")
        notes.append(f"{row}: the model of {config_file}")
        return teacher, {}
    try:
        ckpt = load_checkpoint(checkpoint or "")
    except CheckpointError as err:
        notes.append(f"{row} skipped ({err}); pass --teacher-config "
                     f"{'CONFIG' if row == 'teacher' else row.split(':', 1)[1] + '=CONFIG'}")
        return None
    notes.append(f"{row}: the model config saved in {checkpoint} (classes {dict(ckpt['num_classes'])})")
    return ckpt["model_config"], dict(ckpt["num_classes"])


def class_counts(model_cfg: Mapping, given: Mapping[str, int], from_data: Mapping[str, int]) -> dict[str, int]:
    """``given`` counts, plus the data's for heads that set no ``num_classes``."""
    counts = {task: int(n) for task, n in given.items()}
    filled = {task: from_data[task] for task, head in model_cfg.get("heads", {}).items()
              if head and head.get("num_classes") is None and task not in given and task in from_data}
    return {**counts, **filled}


def data_class_counts(cfg: Config) -> tuple[dict[str, int], str | None]:
    """Class counts of the config's training data; when it is not readable, those of a tiny synthetic set
    made in a temp folder (what tools/make_synthetic.py writes) and the reason, for a note."""
    dataset_cfg = dict((cfg.get("train_dataloader") or {}).get("dataset") or {})
    try:
        return dict(build_dataset(dict(dataset_cfg, pipeline=[])).num_classes), None
    except (OSError, ValueError, KeyError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    with tempfile.TemporaryDirectory() as root:
        make_synthetic_dataset(root, num_train=1, num_val=0, num_test=0, size=32, workers=1, progress=False)
        counts = dict(build_dataset(dict(type="CocoMultiTaskDataset", data_root=root, img_dir="images/train",
                                         ann_file="annotations/instances_train.json")).num_classes)
    return counts, reason


def input_size(parser: argparse.ArgumentParser, given: list[int] | None, cfg: Config, path: str) -> tuple[int, int]:
    """``--input-size``, else the config's ``input_size`` (an int or ``(H, W)``), else 512 x 512."""
    size = given or cfg.get("input_size") or DEFAULT_SIZE
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        where = "--input-size" if given else f"input_size in {path}"
        parser.error(f"{where} must be two positive integers H W, got {size!r}")
    return size


def check_num_classes(parser: argparse.ArgumentParser, given: Mapping, tasks: set[str]) -> None:
    """Every ``--num-classes`` item names a task of the model(s) and gives a positive integer."""
    for task, count in given.items():
        if task not in tasks:
            parser.error(f"--num-classes {task}={count}: the config's models have no task {task!r} "
                         f"(tasks: {sorted(tasks)})")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            parser.error(f"--num-classes {task}={count!r}: expected a positive integer")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    size = input_size(parser, args.input_size, cfg, args.config)
    configs, notes = model_configs(cfg, args.teacher_config)
    check_num_classes(parser, args.num_classes, {t for c, _ in configs.values() for t in c.get("heads", {})})
    heads = [head for model_cfg, _ in configs.values() for head in model_cfg.get("heads", {}).values() if head]
    unset = any(head.get("num_classes") is None for head in heads)
    from_data, reason = data_class_counts(cfg) if unset else ({}, None)
    rows, defaulted = {}, {}
    for name, (model_cfg, trained_with) in configs.items():
        counts = {**class_counts(model_cfg, args.num_classes, from_data), **trained_with}
        if reason is not None:
            defaulted.update({t: n for t, n in counts.items() if t not in args.num_classes and t not in trained_with})
        with torch.device("meta"):
            rows[name] = measure(MODELS.build(model_cfg, num_classes=counts), size)
    print(f"{args.config}  input {size[0]}x{size[1]}, batch 1 (FLOPs by torch FlopCounterMode, multiply-add = 2)")
    width = max(10, *(len(name) for name in rows))
    print(f"{'model':<{width}} {'params':>13} {'GFLOPs':>9}  outputs")
    for name, row in rows.items():
        shapes = ", ".join(f"{t} {list(s)}" for t, s in row["shapes"].items())
        print(f"{name:<{width}} {row['params']:>13,} {row['gflops']:>9.3f}  {shapes}")
    if defaulted:
        notes.append(f"the training data cannot be read ({reason}); class counts {defaulted} are the synthetic "
                     f"set's defaults; set --num-classes for other data")
    if "teacher" in rows and "student" in rows:
        t, s = rows["teacher"], rows["student"]
        print(f"teacher/student: {t['params'] / s['params']:.1f}x params, {t['gflops'] / s['gflops']:.1f}x FLOPs")
    teachers = [row for name, row in rows.items() if name.startswith("teacher:")]
    if teachers and "student" in rows and len(teachers) == len(cfg.model.teachers):
        s = rows["student"]
        print(f"teachers/student ({len(teachers)} teachers, each run once per batch): "
              f"{sum(t['params'] for t in teachers) / s['params']:.1f}x params, "
              f"{sum(t['gflops'] for t in teachers) / s['gflops']:.1f}x FLOPs")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
