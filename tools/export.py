"""Export a checkpoint's inference model (a Distiller run: its student) to ONNX, checked against PyTorch.

    python tools/export.py work_dirs/demo/student_kd/best.pth --out student.onnx [--input-size H W]
                           [--dynamic-batch] [--opset 17] [--split test] [--data-root R]

The .onnx has input ``img`` [B, 3, H, W] and one output per task (its head's raw output); its metadata holds
the classes, the normalization, the input size, each head's output signature (det strides, box encoding),
the model config and the checkpoint's whole config, so that ``tools/test.py student.onnx`` and
``tools/predict.py student.onnx DIR`` need nothing else. After writing, the file is checked with
``onnx.checker`` and run by onnxruntime on a batch of the checkpoint's data (a random normalized batch when
the data cannot be read here); the max abs difference of every output against PyTorch is printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.cli import add_debug_argument, run_tool  # noqa: E402
from mtkd.checkpoint import build_model_from_checkpoint, load_checkpoint  # noqa: E402
from mtkd.config import Config  # noqa: E402
from mtkd.data.builder import build_loader  # noqa: E402
from mtkd.deploy import (DEFAULT_OPSET, DeployError, OnnxModel, build_metadata, check_input_size,  # noqa: E402
                         config_input_size, export_onnx, model_stride)
from mtkd.engine.utils import set_data_root  # noqa: E402

MAX_PARITY_IMAGES = 8


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .pth written by tools/train.py (best.pth, last.pth, ...)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="network input size (default: the stored config's evaluation input size)")
    parser.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch axis (default: batch 1)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument("--split", default="test", choices=("val", "test"), help="whose images check the parity")
    parser.add_argument("--data-root", help="read the parity images from this root instead of the stored one")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest max-abs difference to PyTorch accepted (exit 1 above it)")
    return add_debug_argument(parser).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)   # a CheckpointError, ConfigError or DeployError: one line (run_tool)
    model = build_model_from_checkpoint(ckpt, args.checkpoint)
    size = input_size(args.input_size, ckpt["config"], args.checkpoint)
    check_input_size(size, model_stride(model))
    metadata = build_metadata(ckpt, model, size, args.checkpoint)
    path = export_onnx(model, args.out, size, args.dynamic_batch, args.opset, metadata)
    onnx_model = OnnxModel(path)
    batch = "dynamic" if args.dynamic_batch else "1"
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB, opset {args.opset}, input img [{batch}, 3, "
          f"{size[0]}, {size[1]}], outputs {', '.join(model.tasks)}); onnx.checker: ok")
    img, source = parity_images(ckpt, args, size)
    diffs = parity(model, onnx_model, img)
    print(f"onnxruntime vs PyTorch on {source}: max abs difference per output")
    for task, diff in diffs.items():
        print(f"  {task.ljust(max(map(len, diffs)))}  {diff:.3g}")
    worst = max(diffs.values())
    if worst > args.atol:
        print(f"error: onnxruntime differs from PyTorch by {worst:.3g} > --atol {args.atol}", file=sys.stderr)
        return 1
    return 0


def input_size(given, config: dict, path: str) -> tuple[int, int]:
    """``--input-size``, else the stored config's evaluation input size; an error when neither says."""
    size = tuple(given) if given else config_input_size(config)
    if size is None:
        raise DeployError(f"cannot tell the input size from the config stored in {path} (no fixed-size step in "
                          f"its test/val pipeline, no input_size key): pass --input-size H W")
    return size


def parity_images(ckpt: dict, args: argparse.Namespace, size: tuple[int, int]) -> tuple[torch.Tensor, str]:
    """Up to 8 images of the checkpoint's ``--split`` data at ``size``, else a random normalized batch; and which."""
    cfg = Config(ckpt["config"])
    if args.data_root:
        set_data_root(cfg, args.data_root)
    try:
        cfg[f"{args.split}_dataloader"]["num_workers"] = 0
        batch = next(iter(build_loader(cfg, args.split, distributed=False)))
        img = batch["img"][:MAX_PARITY_IMAGES if args.dynamic_batch else 1]
        if tuple(img.shape[-2:]) != tuple(size):
            raise ValueError(f"its images are {img.shape[-2]}x{img.shape[-1]}, the export's input {size[0]}x{size[1]}")
        return img, f"{len(img)} image(s) of the checkpoint's {args.split} split"
    except Exception as err:  # noqa: BLE001  any reason the data cannot be read here: fall back, and say why
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        img = torch.randn(3 if args.dynamic_batch else 1, 3, *size, generator=torch.Generator().manual_seed(0))
        return img, f"a random normalized batch of {len(img)} (the {args.split} data is not readable here: {reason})"


@torch.no_grad()
def parity(model: torch.nn.Module, onnx_model: OnnxModel, img: torch.Tensor) -> dict[str, float]:
    """``{task: max |onnxruntime - PyTorch|}`` over the raw outputs for ``img`` [B, 3, H, W]."""
    expected, got = model.eval()(img), onnx_model(img)
    return {task: float((got[task] - expected[task].float()).abs().max()) for task in model.tasks}


if __name__ == "__main__":
    sys.exit(run_tool(main))
