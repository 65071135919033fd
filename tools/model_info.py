"""Parameters, FLOPs and output shapes of a config's model(s): the teacher vs student cost table.

    python tools/model_info.py configs/multitask_kd.py --teacher-config configs/teacher.py
    python tools/model_info.py configs/demo/teacher.py [--input-size 128 128] [--num-classes seg=9 det=8 cls=8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.config import Config, DictAction  # noqa: E402
from mtkd.engine.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from mtkd.registry import MODELS  # noqa: E402

SYNTHETIC_CLASSES = {"seg": 9, "det": 8, "cls": 8}  # the embedded synthetic set: 8 shapes (+ background)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a config whose model is a MultiTaskModel or a Distiller")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size for FLOPs (default: the config's input_size, else 512 512)")
    parser.add_argument("--num-classes", nargs="+", action=DictAction, metavar="TASK=N", default={},
                        help="class count per task (default: the synthetic set's seg=9 det=8 cls=8)")
    parser.add_argument("--teacher-config", help="for a Distiller whose teacher comes from its checkpoint: the "
                                                 "config the teacher was trained with (used when the "
                                                 "checkpoint does not exist yet)")
    return parser


def measure(model: torch.nn.Module, size: tuple[int, int]) -> dict:
    """Params (M), forward GFLOPs at batch 1 (torch's FlopCounterMode; 1 multiply-add = 2 FLOPs), shapes."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        outputs = model(torch.zeros(1, 3, *size))
    return {"params": sum(p.numel() for p in model.parameters()) / 1e6, "gflops": counter.get_total_flops() / 1e9,
            "shapes": {task: tuple(out.shape) for task, out in outputs.items() if isinstance(out, torch.Tensor)}}


def model_configs(cfg: Config, teacher_config: str | None) -> tuple[dict[str, dict], list[str]]:
    """``{"teacher": cfg, "student": cfg}`` for a Distiller, ``{"model": cfg}`` otherwise, plus notes."""
    model = cfg.model.to_dict()
    if "student" not in model:
        return {"model": model}, []
    found, notes = {"student": model["student"]}, []
    if model.get("teacher"):
        found["teacher"] = model["teacher"]
    elif teacher_config:
        found["teacher"] = Config.fromfile(teacher_config).model.to_dict()
    else:
        try:
            found["teacher"] = load_checkpoint(model["teacher_checkpoint"])["model_config"]
        except CheckpointError as err:
            notes.append(f"teacher skipped ({err}); pass --teacher-config CONFIG")
    return dict(sorted(found.items(), key=lambda kv: kv[0] != "teacher")), notes


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = Config.fromfile(args.config)
    size = tuple(args.input_size or cfg.get("input_size") or (512, 512))
    num_classes = {**SYNTHETIC_CLASSES, **{k: int(v) for k, v in args.num_classes.items()}}
    configs, notes = model_configs(cfg, args.teacher_config)
    if not args.num_classes:
        notes.append(f"class counts {num_classes} (the synthetic set's); set --num-classes for other data")
    rows = {name: measure(MODELS.build(model_cfg, num_classes=num_classes), size) for name, model_cfg in configs.items()}
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
