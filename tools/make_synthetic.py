"""Write the embedded synthetic multi-task data set (COCO format) to disk, deterministically.

    python tools/make_synthetic.py --out data/synthetic [--num-train 2000] [--num-val 500] [--num-test 500]
                                   [--size 128] [--seed 0] [--workers 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mtkd.cli import add_debug_argument, run_tool  # noqa: E402
from mtkd.data.synthetic import SHAPES, make_synthetic_dataset  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Write images/{{train,val,test}}/*.png and annotations/instances_{{split}}.json: scenes of "
                    f"1-6 shapes ({', '.join(SHAPES)}) on textured backgrounds, with boxes, masks and an "
                    f"image-level label (the class covering the largest visible area). Same seed, same bytes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    parser.add_argument("--num-train", type=int, default=2000, help="images in the train split")
    parser.add_argument("--num-val", type=int, default=500, help="images in the val split (model selection)")
    parser.add_argument("--num-test", type=int, default=500, help="images in the held-out test split")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (square images, >= 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the data is a function of it")
    parser.add_argument("--workers", type=int, default=2, help="processes drawing images in parallel")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return add_debug_argument(parser)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    counts = (args.num_train, args.num_val, args.num_test)
    if min(counts) < 0 or args.size < 32:
        print(f"error: image counts must be >= 0 (got {counts}) and --size >= 32 (got {args.size})", file=sys.stderr)
        return 2
    start = time.perf_counter()
    summary = make_synthetic_dataset(args.out, *counts, size=args.size, seed=args.seed, workers=args.workers,
                                     progress=not args.no_progress and sys.stderr.isatty())
    for split, numbers in summary.items():
        print(f"{split:>5}: {numbers['images']} images, {numbers['objects']} objects")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
