"""Run a checkpoint on a folder of images: print the class of each image, save the predictions drawn.

    python tools/predict.py work_dirs/demo/student_kd/best.pth IMAGES_DIR [--out-dir V]

Prints ``name<TAB>class<TAB>prob`` per image (the original recipe's format) when the model has a ``cls``
head, and writes ``V/<name>.png`` with boxes and the mask overlay drawn on the network input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.data.coco import InvalidSampleError, read_rgb  # noqa: E402
from mtkd.data.imagefolder import IMAGE_SUFFIXES  # noqa: E402
from mtkd.data.transforms import Pipeline  # noqa: E402
from mtkd.engine.checkpoint import CheckpointError, build_model_from_checkpoint, load_checkpoint  # noqa: E402
from mtkd.engine.utils import select_device  # noqa: E402
from mtkd.engine.visualize import denormalize, draw_prediction, save_png, top_class  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .pth written by tools/train.py")
    parser.add_argument("images", help="a folder of images (jpg, png, ...), searched recursively")
    parser.add_argument("--out-dir", default="predictions", help="where the drawn predictions are written")
    parser.add_argument("--split", default="test", choices=("val", "test"),
                        help="whose pipeline (resize, normalization) of the stored config to apply")
    parser.add_argument("--score-thr", type=float, default=0.3, help="smallest detection score drawn")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = Path(args.images)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        print(f"error: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}", file=sys.stderr)
        return 2
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = select_device(args.device)
    model = build_model_from_checkpoint(ckpt, args.checkpoint, device)
    dataset_cfg = ckpt["config"][f"{args.split}_dataloader"]["dataset"]
    pipeline = Pipeline(dataset_cfg.get("pipeline", []))
    mean, std = pipeline.normalization()
    names = class_names(ckpt, dataset_cfg)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        try:
            image = read_rgb(path)
        except InvalidSampleError as err:
            print(f"skipping {path}: {err}", file=sys.stderr)
            continue
        pred = predict_one(model, pipeline, image, device)
        if "cls" in pred:
            name, prob = top_class(pred["cls"], names.get("cls"))
            print(f"{path.relative_to(folder)}\t{name}\t{prob:.4f}")
        drawn = draw_prediction(denormalize(pred.pop("_img"), mean, std), pred, names, args.score_thr)
        save_png(drawn, (out_dir / (path.stem + ".png")))
    print(f"wrote {len(files)} images to {out_dir}", file=sys.stderr)
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
    """Class names per task: the dataset's, when its annotation file is still readable, else indices."""
    try:
        from mtkd.registry import DATASETS
        return dict(DATASETS.build(dict(dataset_cfg, pipeline=[])).class_names)
    except (OSError, ValueError, KeyError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
