"""Parameters, FLOPs and output shapes of a config's model(s): the teacher vs student cost table.

    python tools/model_info.py configs/teacher.py [--input-size 512 512] [--num-classes seg=9 det=8 cls=8]
    python tools/model_info.py configs/multitask_kd.py --teacher-config configs/teacher.py --input-size 512 512

The config's ``model`` is a MultiTaskModel, or a Distiller with ``student`` and ``teacher`` model dicts
(or ``teacher=None`` and a ``teacher_checkpoint`` whose saved model config is used). Models are built on
the meta device: nothing is computed or allocated, so full-size models at 512 px take a second.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.config import Config, DictAction  # noqa: E402
from mtkd.engine.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from mtkd.registry import MODELS  # noqa: E402

SYNTHETIC_CLASSES = {"seg": 9, "det": 8, "cls": 8}  # the embedded synthetic set: 8 shapes (+ background)
DEFAULT_SIZE = (512, 512)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a config whose model is a MultiTaskModel or a Distiller (teacher + student)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size for FLOPs and output shapes (default: the config's input_size, else "
                             f"{DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]})")
    parser.add_argument("--num-classes", nargs="+", action=DictAction, metavar="TASK=N", default={},
                        help="class count per task, e.g. seg=9 det=8 cls=8, as the training data would give them "
                             "(one that disagrees with a head's num_classes in the config is an error); heads "
                             "with no count from either use the synthetic set's seg=9 det=8 cls=8, and the "
                             "output says so")
    parser.add_argument("--teacher-config", help="for a Distiller whose teacher comes from a checkpoint: the config "
                                                 "the teacher was (or will be) trained with; needed when the "
                                                 "checkpoint does not exist yet")
    return parser


def measure(model: torch.nn.Module, size: tuple[int, int]) -> dict:
    """Params (M), forward GFLOPs at batch 1 (torch's FlopCounterMode; 1 multiply-add = 2 FLOPs), shapes."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        outputs = model(torch.zeros(1, 3, *size, device=device))
    return {"params": sum(p.numel() for p in model.parameters()) / 1e6, "gflops": counter.get_total_flops() / 1e9,
            "shapes": {task: tuple(out.shape) for task, out in outputs.items() if isinstance(out, torch.Tensor)}}


def model_configs(cfg: Config, teacher_config: str | None) -> tuple[dict[str, tuple[dict, dict]], list[str]]:
    """``{name: (model cfg, class counts it was trained with or {})}``: teacher + student, or the model."""
    model = cfg.model.to_dict()
    if "student" not in model:
        return {"model": (model, {})}, []
    found, notes = {}, []
    if model.get("teacher"):
        found["teacher"] = (model["teacher"], {})
    elif teacher_config:
        found["teacher"] = (Config.fromfile(teacher_config).model.to_dict(), {})
    else:
        try:
            ckpt = load_checkpoint(model.get("teacher_checkpoint") or "")
            found["teacher"] = (ckpt["model_config"], dict(ckpt["num_classes"]))
        except CheckpointError as err:
            notes.append(f"teacher skipped ({err}); pass --teacher-config CONFIG")
    found["student"] = (model["student"], {})
    return found, notes


def class_counts(model_cfg: Mapping, given: Mapping[str, int], notes: list[str]) -> dict[str, int]:
    """``given`` counts, plus the synthetic set's for heads that set no ``num_classes`` (noted)."""
    counts = {task: int(n) for task, n in given.items()}
    defaulted = {task: SYNTHETIC_CLASSES[task] for task, head in model_cfg.get("heads", {}).items()
                 if head.get("num_classes") is None and task not in given and task in SYNTHETIC_CLASSES}
    note = f"class counts {defaulted} are the synthetic set's defaults; set --num-classes for other data"
    if defaulted and note not in notes:
        notes.append(note)
    return {**counts, **defaulted}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = Config.fromfile(args.config)
    size = tuple(args.input_size or cfg.get("input_size") or DEFAULT_SIZE)
    if len(size) == 1 or isinstance(size[0], (tuple, list)):
        raise SystemExit(f"{args.config}: input_size must be (H, W), got {cfg.get('input_size')!r}")
    configs, notes = model_configs(cfg, args.teacher_config)
    rows = {}
    for name, (model_cfg, trained_with) in configs.items():
        counts = {**class_counts(model_cfg, args.num_classes, notes), **trained_with}
        with torch.device("meta"):
            rows[name] = measure(MODELS.build(model_cfg, num_classes=counts), size)
    print(f"{args.config}  input {size[0]}x{size[1]}")
    print(f"{'model':<10} {'params (M)':>11} {'GFLOPs':>9}  outputs")
    for name, row in rows.items():
        shapes = ", ".join(f"{t} {list(s)}" for t, s in row["shapes"].items())
        print(f"{name:<10} {row['params']:>11.2f} {row['gflops']:>9.2f}  {shapes}")
    if "teacher" in rows and "student" in rows:
        t, s = rows["teacher"], rows["student"]
        print(f"teacher/student: {t['params'] / s['params']:.1f}x params, {t['gflops'] / s['gflops']:.1f}x FLOPs")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
