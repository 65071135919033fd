"""Evaluate a checkpoint on a split; needs nothing but the checkpoint (its merged config travels inside).

    python tools/test.py work_dirs/teacher/best.pth [--split val|test] [--data-root R]
                         [--cfg-options k=v ...] [--out metrics.json] [--show-dir V]

An ``.onnx`` file written by tools/export.py is evaluated the same way, run by onnxruntime (CPU) with the
config from its metadata and the same decoding, NMS and metrics.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.cli import add_debug_argument, run_tool  # noqa: E402
from mtkd.checkpoint import build_model_from_checkpoint  # noqa: E402
from mtkd.config import Config, DictAction, import_custom_modules  # noqa: E402
from mtkd.data.builder import build_loader  # noqa: E402
from mtkd.deploy import load_source  # noqa: E402
from mtkd.engine.evaluate import build_metrics, evaluate  # noqa: E402
from mtkd.engine.utils import select_device, set_data_root  # noqa: E402
from mtkd.visualization import build_drawers, denormalize, draw_prediction, find_normalize, save_png  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate an mtkd checkpoint: rebuilds the model and data from the config stored in "
                    "the checkpoint, loads it with torch.load(weights_only=True), prints the metrics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoint", help="a .pth written by tools/train.py (best.pth, last.pth, ...), or an "
                                           ".onnx written by tools/export.py (run by onnxruntime)")
    parser.add_argument("--split", default="val", choices=("val", "test"),
                        help="which dataloader of the stored config to evaluate")
    parser.add_argument("--data-root", help="point the split's dataset at this root instead of the stored one")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE", default={},
                        help="override values of the stored config, e.g. test_dataloader.batch_size=8")
    parser.add_argument("--out", help="write the metrics to this JSON file (keys <task>/<metric>, plus params, "
                                      "the primary metric of each task, split, images, checkpoint)")
    parser.add_argument("--show-dir", help="save every evaluated image with its predictions drawn here")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to run ('auto' = cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return add_debug_argument(parser)


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ckpt, onnx_model = load_source(args.checkpoint)   # an .onnx: its metadata and an OnnxModel
    cfg = Config(ckpt["config"])
    cfg.merge_from_dict(args.cfg_options or {})
    import_custom_modules(cfg, f"the config stored in {args.checkpoint}")
    if args.data_root:
        set_data_root(cfg, args.data_root)
    device = select_device(args.device)
    try:
        loader = build_loader(cfg, args.split, distributed=False, seed=int(cfg.get("seed", 0)))
    except FileNotFoundError as err:
        root = cfg[f"{args.split}_dataloader"]["dataset"].get("data_root")
        hint = "" if args.data_root else (f"; the checkpoint's data root is {root} (another machine or folder?): "
                                          f"pass --data-root to point at the data here")
        print(f"error: {err}{hint}", file=sys.stderr)
        return 2
    model = build_model_from_checkpoint(ckpt, args.checkpoint, device) if onnx_model is None else onnx_model
    dataset = loader.dataset
    check_classes(ckpt["num_classes"], dataset, args.checkpoint)
    tasks = [t for t in model.tasks if t in dataset.tasks]
    metrics = build_metrics(cfg.get("metrics") or {}, tasks, dataset)
    pipeline = cfg[f"{args.split}_dataloader"]["dataset"].get("pipeline")
    drawers = build_drawers(cfg.get("drawers"), tasks, getattr(dataset, "class_names", None),
                            ckpt["model_config"].get("head_args"))
    saver = PredictionSaver(Path(args.show_dir), find_normalize(pipeline), drawers) if args.show_dir else None
    results = evaluate(model, loader, metrics, device, cfg.get("amp"),
                       progress=not args.no_progress and sys.stderr.isatty(), on_batch=saver)
    print_table(args.checkpoint, args.split, results, model, metrics)
    if args.out:
        record = {**results, "params": sum(p.numel() for p in model.parameters()),
                  "primary": {task: metric.primary for task, metric in metrics.items()},
                  "split": args.split, "num_images": len(dataset), "checkpoint": str(args.checkpoint)}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def check_classes(ckpt_classes: dict, dataset, path: str) -> None:
    """The data must have the classes the model was trained with; say both numbers when not."""
    for task, count in dataset.num_classes.items():
        if task in ckpt_classes and int(ckpt_classes[task]) != int(count):
            raise SystemExit(f"error: {path} was trained with {ckpt_classes[task]} {task} classes, but the "
                             f"evaluation data has {count}")


class PredictionSaver:
    """``on_batch`` callback of ``evaluate``: writes each image with its predictions as a PNG."""

    def __init__(self, out_dir: Path, mean_std, drawers: dict):
        self.out_dir, (self.mean, self.std), self.drawers = out_dir, mean_std, drawers
        out_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, batch, preds) -> None:
        for i, meta in enumerate(batch["meta"]):
            single = {task: pred[i] for task, pred in preds.items()}
            image = draw_prediction(denormalize(batch["img"][i], self.mean, self.std), single, self.drawers)
            save_png(image, (self.out_dir / (Path(str(meta["file_name"])).stem + ".png")))


def print_table(path: str, split: str, results: dict, model, metrics: dict) -> None:
    params = sum(p.numel() for p in model.parameters())
    print(f"\n{path}  split={split}  params={params / 1e6:.2f}M")
    width = max((len(k) for k in results), default=10)
    for key, value in results.items():
        print(f"  {key.ljust(width)}  {value:8.2f}")
    for metric in metrics.values():
        print(metric.summary())


if __name__ == "__main__":
    sys.exit(run_tool(main))
