"""Save a few samples of a config's dataset, after its pipeline, with boxes and masks drawn: look before training.

    python tools/browse_dataset.py configs/demo/teacher.py [--split train] [--num 8] [--out-dir browse]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.config import Config  # noqa: E402
from mtkd.data import build_dataset  # noqa: E402
from mtkd.engine.utils import set_data_root  # noqa: E402
from mtkd.engine.visualize import denormalize, draw_prediction, save_png  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a config with train/val/test dataloaders")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="which dataloader's dataset and pipeline (train shows the augmentations)")
    parser.add_argument("--num", type=int, default=8, help="how many samples to draw, from the first")
    parser.add_argument("--out-dir", default="browse", help="folder for the PNG files")
    parser.add_argument("--data-root", help="point the dataset at this root instead of the config's")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    dataset = build_dataset(cfg[f"{args.split}_dataloader"]["dataset"])
    mean, std = dataset.pipeline.normalization()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for index in range(min(args.num, len(dataset))):
        sample = dataset[index]
        labels = {}
        if "seg" in sample:
            labels["seg"] = sample["seg"]
        if "boxes" in sample:
            labels["det"] = {"boxes": sample["boxes"], "labels": sample["labels"],
                             "scores": sample["boxes"].new_ones(len(sample["boxes"]))}
        image = draw_prediction(denormalize(sample["img"], mean, std), labels, dataset.class_names, score_thr=0.0)
        name = Path(str(sample["meta"]["file_name"])).stem
        if "cls" in sample:
            name += f"_{dataset.class_names['cls'][int(sample['cls'])]}"
        save_png(image, out_dir / f"{index:03d}_{name}.png")
    print(f"wrote {min(args.num, len(dataset))} images to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
