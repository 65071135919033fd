"""The two figures of the results section: training curves scratch vs KD, predictions teacher vs students.

    python benchmarks/plots.py [--quality-dir work_dirs/bench/quality] [--seed 0] [--num-images 4]

curves.png: from every ``scratch_s*/``, ``kd_s*/`` and ``kd_feat_s*/`` run's metrics.jsonl (written by
tools/train.py), the epoch means of the ground-truth loss terms and the val metrics per epoch; the line is
the mean over seeds, the band spans min..max. predictions.png: the same val images, ground truth and the
predictions of the teacher, the scratch student and the distilled students of one seed (best.pth of
each). The feature-KD runs are drawn when they exist.
Needs matplotlib (``pip install -e ".[plot]"``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtkd  # noqa: E402,F401  registers every component
from benchmarks.common import RESULTS_DIR  # noqa: E402
from mtkd.config import Config  # noqa: E402
from mtkd.engine.checkpoint import build_model_from_checkpoint, load_checkpoint  # noqa: E402
from mtkd.engine.trainer import build_loader  # noqa: E402
from mtkd.engine.visualize import denormalize, draw_prediction, find_normalize  # noqa: E402

CURVE_KEYS = ("train/seg/ce", "train/det/box", "train/det/obj", "train/det/cls", "train/cls/ce",
              "seg/mIoU", "det/mAP", "cls/top1")
RUNS = {"scratch": "scratch", "kd": "output KD", "kd_feat": "output + feature KD"}  # quality.py's run prefixes
OPTIONAL = ("kd_feat",)  # drawn when quality.py trained it (its default), skipped otherwise
COLUMNS = ("teacher", "scratch", "kd", "kd_feat")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality-dir", default="work_dirs/bench/quality", help="benchmarks/quality.py's work dir")
    parser.add_argument("--seed", type=int, default=0, help="whose checkpoints draw predictions.png")
    parser.add_argument("--num-images", type=int, default=4, help="val images in predictions.png")
    parser.add_argument("--score-thr", type=float, default=0.3, help="smallest detection score drawn")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the PNGs go")
    return parser


def read_metrics(path: Path) -> list[dict]:
    """The lines of one metrics.jsonl; a missing file is an error that says how to make it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run benchmarks/quality.py first (it trains these runs)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curves(quality_dir: Path, prefix: str) -> dict[str, tuple[list[int], list[list[float]]]]:
    """``{key: (epochs, [values per seed run])}`` over every ``<prefix>_s*`` run."""
    runs = sorted(quality_dir.glob(f"{prefix}_s*/metrics.jsonl"))
    if not runs:
        raise FileNotFoundError(f"no {quality_dir}/{prefix}_s*/metrics.jsonl: run benchmarks/quality.py first")
    records = [read_metrics(path) for path in runs]
    epochs = [r["epoch"] for r in records[0]]
    out = {}
    for key in CURVE_KEYS:
        series = [[r.get(key, float("nan")) for r in rec][:len(epochs)] for rec in records]
        out[key] = (epochs, [s for s in series if len(s) == len(epochs)])
    return out


def plot_curves(quality_dir: Path, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for prefix, label in RUNS.items():
        if prefix in OPTIONAL and not any(quality_dir.glob(f"{prefix}_s*/metrics.jsonl")):
            continue
        data = curves(quality_dir, prefix)
        for ax, key in zip(axes.flat, CURVE_KEYS):
            epochs, series = data[key]
            values = torch.tensor(series, dtype=torch.float64)
            mean = values.mean(0)
            line, = ax.plot(epochs, mean.tolist(), marker="o", label=f"{label} (n={len(series)})")
            if len(series) > 1:
                ax.fill_between(epochs, values.min(0).values.tolist(), values.max(0).values.tolist(),
                                color=line.get_color(), alpha=0.2)
            ax.set_title(key + (" (train, epoch mean)" if key.startswith("train/") else " (val, %)"))
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle("CPU demo student: from scratch vs distilled (ground-truth loss terms and val metrics)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def ground_truth(batch: dict, i: int) -> dict:
    """One image's labels in the prediction format draw_prediction takes."""
    gt = {}
    if "seg" in batch:
        gt["seg"] = batch["seg"][i]
    if "boxes" in batch:
        boxes = batch["boxes"][i]
        gt["det"] = {"boxes": boxes, "labels": batch["labels"][i], "scores": torch.ones(len(boxes))}
    return gt


@torch.no_grad()
def plot_predictions(quality_dir: Path, seed: int, num_images: int, score_thr: float, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, ckpts = {}, {}
    columns = [n for n in COLUMNS if n not in OPTIONAL or (quality_dir / f"{n}_s{seed}" / "best.pth").is_file()]
    for name in columns:
        path = quality_dir / f"{name}_s{seed}" / "best.pth"
        ckpts[name] = load_checkpoint(path)
        models[name] = build_model_from_checkpoint(ckpts[name], path)
    cfg = Config(ckpts["kd"]["config"])
    cfg.val_dataloader.update(batch_size=num_images, num_workers=0)
    loader = build_loader(cfg, "val", False, seed)
    batch = next(iter(loader))
    names = getattr(loader.dataset, "class_names", None)
    mean, std = find_normalize(cfg.val_dataloader.dataset.get("pipeline"))
    preds = {name: model.predict(model(batch["img"]), batch) for name, model in models.items()}
    titles = ["ground truth", *[f"{RUNS.get(n, n)} ({sum(p.numel() for p in models[n].parameters()) / 1e6:.2f}M)"
                                for n in columns]]
    fig, axes = plt.subplots(num_images, len(titles), figsize=(3 * len(titles), 3 * num_images), squeeze=False)
    for i in range(num_images):
        image = denormalize(batch["img"][i], mean, std)
        panels = [draw_prediction(image, ground_truth(batch, i), names, 0.0)]
        labels = [names["cls"][int(batch["cls"][i])] if "cls" in batch and names else ""]
        for name in columns:
            single = {task: pred[i] for task, pred in preds[name].items()}
            panels.append(draw_prediction(image, single, names, score_thr))
            if "cls" in single:
                prob, index = single["cls"].max(0)
                labels.append(f"{names['cls'][int(index)] if names else int(index)} {float(prob):.2f}")
        for j, (panel, label) in enumerate(zip(panels, labels)):
            ax = axes[i, j]
            ax.imshow(panel.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"cls: {label}" if label else "")
            if i == 0:
                ax.set_title(titles[j])
    fig.suptitle(f"val images: masks, boxes (score >= {score_thr}) and image class, seed {seed}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quality_dir, out_dir = Path(args.quality_dir), Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"wrote {plot_curves(quality_dir, out_dir / 'curves.png')}")
    print(f"wrote {plot_predictions(quality_dir, args.seed, args.num_images, args.score_thr, out_dir / 'predictions.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
