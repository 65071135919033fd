"""Save samples of a config's dataset after its pipeline, with every task's ground truth drawn.

    python tools/browse_dataset.py configs/demo/teacher.py [--split train] [--num 8] [--out-dir browse]
                                   [--data-root data/synthetic] [--zoom 3]

Look before training: what the network will see (augmented for --split train), and whether the labels
still sit on the objects. Each task is drawn by the config's `drawers` (built in: the semantic mask with
ignored pixels dark grey, labelled boxes, the image class as text, the depth map as a panel on the right).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import torch  # noqa: E402

from mtkd.cli import add_debug_argument, run_tool  # noqa: E402
import mtkd  # noqa: E402,F401  registers every component
from mtkd.config import Config  # noqa: E402
from mtkd.data import build_dataset  # noqa: E402
from mtkd.engine.utils import set_data_root  # noqa: E402
from mtkd.visualization import build_drawers, denormalize, draw_target, save_png  # noqa: E402

MIN_SIDE = 384  # automatic zoom: small images are enlarged until their longer side reaches this


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a config with train/val/test dataloaders, e.g. configs/demo/teacher.py")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="which dataloader's dataset and pipeline to show (train shows the augmentations)")
    parser.add_argument("--num", type=int, default=8, help="how many samples to save, from the first")
    parser.add_argument("--out-dir", default="browse", help="folder for the PNG files (created)")
    parser.add_argument("--data-root", help="point the dataset at this root instead of the config's data_root")
    parser.add_argument("--zoom", type=int, default=0,
                        help=f"integer enlargement, nearest neighbour (0: enough for a {MIN_SIDE} px longer side)")
    return add_debug_argument(parser)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    loader_key = f"{args.split}_dataloader"
    if loader_key not in cfg or "dataset" not in cfg[loader_key]:
        print(f"error: {args.config} has no {loader_key}.dataset", file=sys.stderr)
        return 2
    dataset = build_dataset(cfg[loader_key]["dataset"])
    mean, std = dataset.pipeline.normalization()
    drawers = build_drawers(cfg.get("drawers"), dataset.tasks, dataset.class_names,
                            getattr(dataset, "head_args", None))
    undrawn = [task for task in dataset.tasks if task not in drawers]
    if undrawn:
        print(f"note: no drawer for tasks {undrawn} (the config's `drawers`); they are not drawn", file=sys.stderr)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = min(args.num, len(dataset))
    for index in range(count):
        sample = dataset[index]
        zoom = args.zoom or max(1, -(-MIN_SIDE // max(sample["img"].shape[-2:])))
        image = denormalize(sample["img"], mean, std).repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
        image = draw_target(image, sample, drawers, dataset.tasks)  # drawers scale the labels to the image
        name = f"{index:03d}_{Path(str(sample['meta']['file_name'])).stem}"
        save_png(image, out_dir / f"{name}.png")
        print(f"{out_dir / name}.png: tasks {list(dataset.tasks)}, input {tuple(sample['img'].shape[-2:])}, zoom {zoom}")
    print(f"wrote {count} images ({args.split} split, after the pipeline) to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
