"""The two figures of the results section: training curves scratch vs KD, predictions teacher vs students.

    python benchmarks/plots.py [--quality-dir work_dirs/bench/quality] [--seed 0] [--num-images 4]

curves.png: from every ``scratch_s*/``, ``kd_s*/`` and ``kd_feat_s*/`` run's metrics.jsonl (written by
tools/train.py), the epoch means of each task's ground-truth loss terms (``train/<task>/<term>``; not the
Distiller's per-task hard/soft/total sums, the total loss or the feature-KD terms) and each task's primary
val metric (as tools/test.py recorded it in the runs' ``*_metrics.json``); the line is the mean over seeds,
the band spans min..max. predictions.png: the same val images, ground truth and the predictions of the
teacher, the scratch student and the distilled students of one seed (best.pth of each), every task drawn
by the drawer its config names (``drawers``). The feature-KD runs are drawn when they exist.
Needs matplotlib (``pip install -e ".[plot]"``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtkd  # noqa: E402,F401  registers every component
from benchmarks.common import RESULTS_DIR, primary_metrics  # noqa: E402
from mtkd.checkpoint import build_model_from_checkpoint, load_checkpoint  # noqa: E402
from mtkd.config import Config  # noqa: E402
from mtkd.data.builder import build_loader  # noqa: E402
from mtkd.visualization import build_drawers, denormalize, draw_prediction, draw_target, find_normalize  # noqa: E402

RUNS = {"scratch": "scratch", "kd": "output KD", "kd_feat": "output + feature KD"}  # quality.py's run prefixes
OPTIONAL = ("kd_feat",)  # drawn when quality.py trained it (its default), skipped otherwise
COLUMNS = ("teacher", "scratch", "kd", "kd_feat")
AGGREGATES = ("hard", "soft", "total")  # the Distiller's sums per task: not ground-truth loss terms
PANELS_PER_ROW = 4  # curves.png: plots per row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality-dir", default="work_dirs/bench/quality", help="benchmarks/quality.py's work dir")
    parser.add_argument("--seed", type=int, default=0, help="whose checkpoints draw predictions.png")
    parser.add_argument("--num-images", type=int, default=4, help="val images in predictions.png")
    parser.add_argument("--score-thr", type=float,
                        help="smallest score drawn by drawers that filter by score (default: the configs' drawers)")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the PNGs go")
    return parser


def read_metrics(path: Path) -> list[dict]:
    """The lines of one metrics.jsonl; a missing file is an error that says how to make it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run benchmarks/quality.py first (it trains these runs)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_primary_metrics(quality_dir: Path) -> dict[str, str]:
    """``{task: primary metric}`` from the runs' ``val/test_metrics.json`` (the teacher's first)."""
    paths = [p for name in COLUMNS for p in sorted(quality_dir.glob(f"{name}_s*/*_metrics.json"))]
    try:
        return primary_metrics(json.loads(path.read_text()) for path in paths)
    except ValueError:
        raise FileNotFoundError(f"no primary metrics in {quality_dir}/*_s*/*_metrics.json: run "
                                f"benchmarks/quality.py first (it tests every run)") from None


def curve_keys(records: Sequence[Mapping], primary: Mapping[str, str]) -> list[str]:
    """Each task's ground-truth loss terms ``train/<task>/<term>`` (in the order the records have them),
    then each task's primary metric: the plots of curves.png."""
    seen = list(dict.fromkeys(key for record in records for key in record))
    terms = [key for task in primary for key in seen
             if key.startswith(f"train/{task}/") and key[len(f"train/{task}/"):] not in AGGREGATES]
    return terms + list(primary.values())


def run_records(quality_dir: Path, prefix: str) -> list[list[dict]]:
    """The metrics.jsonl lines of every ``<prefix>_s*`` run."""
    runs = sorted(quality_dir.glob(f"{prefix}_s*/metrics.jsonl"))
    if not runs:
        raise FileNotFoundError(f"no {quality_dir}/{prefix}_s*/metrics.jsonl: run benchmarks/quality.py first")
    return [read_metrics(path) for path in runs]


def curves(quality_dir: Path, prefix: str, keys: Sequence[str] | None = None
           ) -> dict[str, tuple[list[int], list[list[float]]]]:
    """``{key: (epochs, [values per seed run])}`` over every ``<prefix>_s*`` run; ``keys`` default to
    :func:`curve_keys` of these runs."""
    records = run_records(quality_dir, prefix)
    if keys is None:
        keys = curve_keys([r for rec in records for r in rec], run_primary_metrics(quality_dir))
    epochs = [r["epoch"] for r in records[0]]
    out = {}
    for key in keys:
        series = [[_number(r.get(key)) for r in rec][:len(epochs)] for rec in records]
        out[key] = (epochs, [s for s in series if len(s) == len(epochs)])
    return out


def _number(value) -> float:
    return float("nan") if value is None else float(value)  # metrics.jsonl writes NaN as null


def plot_curves(quality_dir: Path, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefixes = [p for p in RUNS if p not in OPTIONAL or any(quality_dir.glob(f"{p}_s*/metrics.jsonl"))]
    records = [r for p in prefixes for rec in run_records(quality_dir, p) for r in rec]
    keys = curve_keys(records, run_primary_metrics(quality_dir))
    rows = math.ceil(len(keys) / PANELS_PER_ROW)
    fig, axes = plt.subplots(rows, PANELS_PER_ROW, figsize=(4 * PANELS_PER_ROW, 3.5 * rows), squeeze=False)
    for prefix in prefixes:
        data = curves(quality_dir, prefix, keys)
        for ax, key in zip(axes.flat, keys):
            epochs, series = data[key]
            values = torch.tensor(series, dtype=torch.float64)
            mean = values.mean(0)
            line, = ax.plot(epochs, mean.tolist(), marker="o", label=f"{RUNS[prefix]} (n={len(series)})")
            if len(series) > 1:
                ax.fill_between(epochs, values.min(0).values.tolist(), values.max(0).values.tolist(),
                                color=line.get_color(), alpha=0.2)
            ax.set_title(key + (" (train, epoch mean)" if key.startswith("train/") else " (val)"))
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    axes.flat[0].legend()
    fig.suptitle("CPU demo student: from scratch vs distilled (ground-truth loss terms and val metrics)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def image_sample(batch: Mapping, i: int) -> dict:
    """Image ``i``'s entries of a collated batch (each key's tensor or list indexed at ``i``)."""
    return {key: value[i] for key, value in batch.items()}


def load_columns(quality_dir: Path, seed: int) -> tuple[dict, dict]:
    """``({column: model}, {column: checkpoint})`` of the runs drawn in predictions.png."""
    columns = [n for n in COLUMNS if n not in OPTIONAL or (quality_dir / f"{n}_s{seed}" / "best.pth").is_file()]
    models, ckpts = {}, {}
    for name in columns:
        path = quality_dir / f"{name}_s{seed}" / "best.pth"
        ckpts[name] = load_checkpoint(path)
        models[name] = build_model_from_checkpoint(ckpts[name], path)
    return models, ckpts


def column_drawers(ckpts: Mapping[str, Mapping], tasks: Sequence[str], dataset, score_thr: float | None) -> dict:
    """``{task: drawer}`` as the runs' configs name them (the first config with an entry for a task)."""
    cfgs: dict = {}
    for ckpt in ckpts.values():
        for task, cfg in (ckpt["config"].get("drawers") or {}).items():
            cfgs.setdefault(task, cfg)
    names = next((c["class_names"] for c in ckpts.values() if c.get("class_names")), None)
    drawers = build_drawers(cfgs, tasks, names or getattr(dataset, "class_names", None),
                            getattr(dataset, "head_args", None))
    for drawer in drawers.values():
        if score_thr is not None and hasattr(drawer, "score_thr"):
            drawer.score_thr = score_thr
    return drawers


def describe(pred: Mapping, drawers: Mapping) -> str:
    """The drawers' one-line descriptions of one image's predictions, a line per task that has one."""
    lines = [(task, drawer.describe(pred[task])) for task, drawer in drawers.items() if task in pred]
    return "\n".join(f"{task}: {text.replace(chr(9), ' ')}" for task, text in lines if text)


@torch.no_grad()
def plot_predictions(quality_dir: Path, seed: int, num_images: int, score_thr: float | None, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, ckpts = load_columns(quality_dir, seed)
    cfg = Config(ckpts["kd"]["config"])
    cfg.val_dataloader.update(batch_size=num_images, num_workers=0)
    loader = build_loader(cfg, "val", False, seed)
    batch = next(iter(loader))
    tasks = list(dict.fromkeys(task for model in models.values() for task in model.tasks))
    drawers = column_drawers(ckpts, tasks, loader.dataset, score_thr)
    labelled = [t for t in tasks if any(t in m.tasks and m.has_labels(t, batch) for m in models.values())]
    mean, std = find_normalize(cfg.val_dataloader.dataset.get("pipeline"))
    preds = {name: model.predict(model(batch["img"]), batch) for name, model in models.items()}
    titles = ["ground truth", *[f"{RUNS.get(n, n)} ({sum(p.numel() for p in models[n].parameters()) / 1e6:.2f}M)"
                                for n in models]]
    grid, notes = [], []
    for i in range(num_images):
        image = denormalize(batch["img"][i], mean, std)
        singles = [{t: p[i] for t, p in preds[n].items()} for n in models]
        grid.append([draw_target(image, image_sample(batch, i), drawers, labelled),
                     *[draw_prediction(image, single, drawers) for single in singles]])
        notes.append(["", *[describe(single, drawers) for single in singles]])
    aspect = grid[0][0].shape[2] / grid[0][0].shape[1]  # panel drawers (depth) widen every picture
    fig, axes = plt.subplots(num_images, len(titles), figsize=(3 * aspect * len(titles), 3 * num_images),
                             squeeze=False)
    for i, row in enumerate(grid):
        for j, panel in enumerate(row):
            ax = axes[i, j]
            ax.imshow(panel.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(notes[i][j], fontsize=8)
            if i == 0:
                ax.set_title(titles[j])
    fig.suptitle(f"val images, seed {seed}: {', '.join(drawers)} as each config's drawers draw them")
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
