"""Run a checkpoint on a folder of images: print one line per image, save the predictions drawn.

    python tools/predict.py work_dirs/demo/student_kd/best.pth IMAGES_DIR [--out-dir V]

Prints ``name<TAB>...`` per image with what each task's drawer says of its prediction (an image class:
``class<TAB>prob``, the original recipe's format; detections: the box count; depth: its range), and
writes ``V/<name>.png`` with every task's prediction drawn on the network input (the config's ``drawers``).
An ``.onnx`` file written by tools/export.py works the same way (onnxruntime on CPU, config from its metadata).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.cli import add_debug_argument, run_tool  # noqa: E402
from mtkd.checkpoint import build_model_from_checkpoint  # noqa: E402
from mtkd.config import import_custom_modules  # noqa: E402
from mtkd.data.imagefolder import IMAGE_SUFFIXES  # noqa: E402
from mtkd.data.io import InvalidSampleError, read_rgb  # noqa: E402
from mtkd.data.transforms import Pipeline  # noqa: E402
from mtkd.deploy import load_source  # noqa: E402
from mtkd.engine.utils import select_device  # noqa: E402
from mtkd.visualization import build_drawers, denormalize, draw_prediction, save_png  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .pth written by tools/train.py, or an .onnx by tools/export.py")
    parser.add_argument("images", help="a folder of images (jpg, png, ...), searched recursively")
    parser.add_argument("--out-dir", default="predictions", help="where the drawn predictions are written")
    parser.add_argument("--split", default="test", choices=("val", "test"),
                        help="whose pipeline (resize, normalization) of the stored config to apply")
    parser.add_argument("--score-thr", type=float,
                        help="smallest score drawn by drawers that filter by score (default: the config's drawers)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    return add_debug_argument(parser).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = Path(args.images)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        print(f"error: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}", file=sys.stderr)
        return 2
    ckpt, onnx_model = load_source(args.checkpoint)   # an .onnx: its metadata and an OnnxModel
    import_custom_modules(ckpt["config"], f"the config stored in {args.checkpoint}")
    device = select_device(args.device)
    model = build_model_from_checkpoint(ckpt, args.checkpoint, device) if onnx_model is None else onnx_model
    dataset_cfg = ckpt["config"][f"{args.split}_dataloader"]["dataset"]
    pipeline = Pipeline(dataset_cfg.get("pipeline", []))
    mean, std = pipeline.normalization()
    drawers = build_drawers(ckpt["config"].get("drawers"), model.tasks, class_names(ckpt, dataset_cfg),
                            ckpt["model_config"].get("head_args"))
    for drawer in drawers.values():
        if args.score_thr is not None and hasattr(drawer, "score_thr"):
            drawer.score_thr = args.score_thr
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in files:
        try:
            image = read_rgb(path)
        except InvalidSampleError as err:
            print(f"skipping {path}: {err}", file=sys.stderr)
            continue
        pred = predict_one(model, pipeline, image, device)
        lines = [text for task, drawer in drawers.items() if (text := drawer.describe(pred[task]))]
        print("\t".join([str(path.relative_to(folder)), *lines]))
        save_png(draw_prediction(denormalize(pred.pop("_img"), mean, std), pred, drawers),
                 out_dir / (path.stem + ".png"))
        written += 1
    print(f"wrote {written} of {len(files)} images to {out_dir}", file=sys.stderr)
    return 0


@torch.no_grad()
def predict_one(model, pipeline: Pipeline, image: np.ndarray, device) -> dict:
    """One RGB image -> ``{task: prediction}`` (plus ``_img``, the normalized network input)."""
    out = pipeline(image)
    img = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()[None].to(device)
    batch = {"img": img}
    preds = model.predict(model(img), batch)
    single = {task: pred[0] for task, pred in preds.items()}
    single["_img"] = img[0].cpu()
    return single


def class_names(ckpt: dict, dataset_cfg: dict) -> dict:
    """Class names per task: saved in the checkpoint, else the dataset's (when its annotation file is still
    readable), else none (drawn as indices)."""
    if ckpt.get("class_names"):
        return dict(ckpt["class_names"])
    try:
        from mtkd.registry import DATASETS
        return dict(DATASETS.build(dict(dataset_cfg, pipeline=[])).class_names)
    except (OSError, ValueError, KeyError):
        return {}


if __name__ == "__main__":
    sys.exit(run_tool(main))
