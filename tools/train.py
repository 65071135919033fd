"""Train a model (teacher or student from scratch) or distill a student, from a config file.

    python tools/train.py configs/multitask_kd.py [--work-dir D] [--data-root R] [--cfg-options k=v ...]
                          [--resume [CKPT]] [--seed S] [--deterministic] [--device cpu|cuda] [--no-progress]
    torchrun --nproc-per-node N tools/train.py configs/multitask_kd.py      # same code, DDP
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import mtkd  # noqa: E402,F401  registers every component
from mtkd.config import Config, ConfigError, DictAction  # noqa: E402
from mtkd import dist  # noqa: E402
from mtkd.cli import add_debug_argument, run_tool  # noqa: E402
from mtkd.data.io import InvalidSampleError  # noqa: E402
from mtkd.data.synthetic import SYNTHETIC_VERSION, make_synthetic_dataset, synthetic_version  # noqa: E402
from mtkd.engine.run_checkpoint import NonFiniteStateError  # noqa: E402
from mtkd.engine.trainer import NonFiniteLossError, TrainingInterrupted, train  # noqa: E402
from mtkd.engine.utils import set_data_root  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train or distill with mtkd. The config's `model` is a MultiTaskModel (plain training) "
                    "or a Distiller (student trained on ground truth plus a frozen teacher).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("config", help="path of a Python config file, e.g. configs/demo/teacher.py")
    parser.add_argument("--work-dir", help="where checkpoints, logs, metrics.jsonl and tb/ go "
                                           "(default: the config's work_dir, else work_dirs/<config name>)")
    parser.add_argument("--data-root", help="point every split's dataset (train/val/test) at this root")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE", default={},
                        help="override config values, e.g. train_cfg.max_epochs=1 optimizer.lr=0.01 "
                             "model.teacher_checkpoint=T.pth; lists as a,b or [a,b], tuples as (a,b)")
    parser.add_argument("--resume", nargs="?", const="auto", metavar="CKPT",
                        help="continue a run: from CKPT, or without a value from <work-dir>/last.pth")
    parser.add_argument("--seed", type=int, help="global random seed (overrides the config's `seed`)")
    parser.add_argument("--deterministic", action="store_true",
                        help="use deterministic torch algorithms (slower; exact reruns and resumes on CPU)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                        help="where to train (default: the config's `device`, 'auto' = cuda when available)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are also off when stderr is not a terminal)")
    return add_debug_argument(parser)


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def load_config(args: argparse.Namespace) -> Config:
    """Config file + command-line overrides, with the work dir resolved."""
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options or {})
    if args.data_root:
        set_data_root(cfg, str(Path(args.data_root).resolve()))
    if args.seed is not None:
        cfg.seed = args.seed
    if args.deterministic:
        cfg.deterministic = True
    if args.device:
        cfg.device = args.device
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or str(Path("work_dirs") / Path(args.config).stem)
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ensure_synthetic_data(cfg, progress=not args.no_progress and sys.stderr.isatty())
    resume = str(Path(cfg.work_dir) / "last.pth") if args.resume == "auto" else args.resume
    if resume and not Path(resume).is_file():
        print(f"error: --resume: no checkpoint at {resume}", file=sys.stderr)
        return 2
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        summary = train(cfg, resume=resume, progress=progress)
    except TrainingInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return err.exit_code
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, NonFiniteStateError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except InvalidSampleError as err:  # raised in a loader worker: its last line is the original message
        reason = str(err).strip().splitlines()[-1].removeprefix(f"{InvalidSampleError.__module__}.InvalidSampleError: ")
        print(f"error: {reason}\n(skip and count such images with skip_invalid=True on the dataset)", file=sys.stderr)
        return 1
    finally:
        dist.cleanup()
    print(f"best {summary['best']} at epoch {summary['best_epoch']}; work dir {summary['work_dir']}")
    return 0


def ensure_synthetic_data(cfg: Config, progress: bool) -> None:
    """Write the config's synthetic set (``synthetic_data``, see configs/_base_/datasets/synthetic.py) when its
    data root has none of this generator version; under torchrun say the command instead (ranks would race).
    A data root elsewhere (``--data-root``) is the user's data: never written here."""
    spec = dict(cfg.get("synthetic_data") or {})
    if not spec:
        return
    out = Path(spec.pop("out", "data/synthetic"))
    roots = {Path(loader["dataset"]["data_root"]) for key, loader in cfg.items()
             if key.endswith("_dataloader") and isinstance(loader, dict) and loader.get("dataset", {}).get("data_root")}
    if out.resolve() not in {root.resolve() for root in roots} or synthetic_version(out) == SYNTHETIC_VERSION:
        return
    command = f"python tools/make_synthetic.py --out {out} " + " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in spec.items())
    state = "is missing" if synthetic_version(out) is None else "was made by an older generator"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FileNotFoundError(f"the synthetic data at {out} {state}; make it once before torchrun: {command}")
    print(f"the synthetic data at {out} {state}: writing it ({command}) ...", file=sys.stderr)
    make_synthetic_dataset(out, **spec, progress=progress)


if __name__ == "__main__":
    sys.exit(run_tool(main))
