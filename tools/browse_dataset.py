"""Save samples of a config's dataset after its pipeline, with the boxes (class names) and semantic mask drawn.

    python tools/browse_dataset.py configs/demo/teacher.py [--split train] [--num 8] [--out-dir browse]
                                   [--data-root data/synthetic] [--zoom 3]

Look before training: what the network will see (augmented for --split train), and whether the labels
still sit on the objects. Ignored pixels (255) are dark grey; the image-level class is in the file name.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import torch  # noqa: E402
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks  # noqa: E402

import mtkd  # noqa: E402,F401  registers every component
from mtkd.config import Config  # noqa: E402
from mtkd.data import build_dataset  # noqa: E402
from mtkd.engine.utils import set_data_root  # noqa: E402
from mtkd.engine.visualize import denormalize, save_png  # noqa: E402
from mtkd.structures import IGNORE_INDEX  # noqa: E402

IGNORE_COLOUR = (60, 60, 60)
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
    return parser


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """One fixed, well-spread colour per class index (HSV hue wheel, golden-ratio steps)."""
    colours = []
    for k in range(count):
        hue = (k * 0.618034) % 1.0
        rgb = [max(0.0, min(1.0, abs((hue * 6 + shift) % 6 - 3) - 1)) for shift in (0, 4, 2)]
        colours.append(tuple(int(60 + 195 * c) for c in rgb))
    return colours


def draw_sample(sample: dict, class_names: dict, mean: tuple, std: tuple, zoom: int) -> torch.Tensor:
    """uint8 ``[3, zoom*H, zoom*W]``: the input image with its semantic mask and labelled boxes."""
    image = denormalize(sample["img"], mean, std)
    image = image.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    colours = class_colours(max(len(class_names.get("seg", ())), len(class_names.get("det", ())) + 1, 1))
    if "seg" in sample:
        seg = sample["seg"].repeat_interleave(zoom, 0).repeat_interleave(zoom, 1)
        present = [int(c) for c in seg.unique() if int(c) != 0]  # 0 is background
        if present:
            masks = torch.stack([seg == c for c in present])
            palette = [IGNORE_COLOUR if c == IGNORE_INDEX else colours[c % len(colours)] for c in present]
            image = draw_segmentation_masks(image, masks, alpha=0.45, colors=palette)
    if "boxes" in sample and len(sample["boxes"]):
        names = class_names.get("det")
        labels = [int(v) for v in sample["labels"]]
        text = [names[v] if names else str(v) for v in labels]
        # det class k is seg class k + 1 in COCO-format datasets: a box and its pixels share a colour
        image = draw_bounding_boxes(image, sample["boxes"] * zoom, labels=text, width=max(1, zoom // 2),
                                    colors=[colours[(v + 1) % len(colours)] for v in labels],
                                    label_colors="black", fill_labels=True)  # names readable on any background
    return image


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
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = min(args.num, len(dataset))
    for index in range(count):
        sample = dataset[index]
        zoom = args.zoom or max(1, -(-MIN_SIDE // max(sample["img"].shape[-2:])))
        image = draw_sample(sample, dataset.class_names, mean, std, zoom)
        name = f"{index:03d}_{Path(str(sample['meta']['file_name'])).stem}"
        if "cls" in sample:
            name += f"_{dataset.class_names['cls'][int(sample['cls'])]}"
        save_png(image, out_dir / f"{name}.png")
        boxes = len(sample["boxes"]) if "boxes" in sample else 0
        print(f"{out_dir / name}.png: {boxes} boxes, input {tuple(sample['img'].shape[-2:])}, zoom {zoom}")
    print(f"wrote {count} images ({args.split} split, after the pipeline) to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
