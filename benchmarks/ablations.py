"""Ablations of the distilled demo student: alpha, temperature, per-task KD, det KD form, feature KD.

    python benchmarks/ablations.py [--groups alpha det_alpha temperature per_task det_kd from_first_recipe
                                   feature_kd] [--seeds 0]
                                   [--epochs 12]

Every variant is the default recipe of configs/demo/student_kd.py with one thing changed through --cfg-options, distilled from the teacher of the same seed that
benchmarks/quality.py trains (trained here when missing), on quality.py's schedule (--epochs, 12 by
default, every run). The teacher and scratch runs are shared with quality.py's work dir. Numbers are on
the held-out test split; the val split (which picked each best.pth) is the one to choose settings by.
Prints one table per group for each split and writes benchmarks/results/ablations.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (BENCH_DATA, BENCH_NUM_TEST, QUALITY_KEYS, RESULTS_DIR,  # noqa: E402
                               check_data, markdown_table, mean_std, train_and_test, write_results)

TASKS = ("seg", "det", "cls")
KD_CONFIG = "configs/demo/student_kd.py"
FEAT_CONFIG = "configs/demo/student_kd_feat.py"  # KD_CONFIG + PKD feature KD on the four neck levels
QUALITY_RUNS = {KD_CONFIG: "kd", FEAT_CONFIG: "kd_feat"}  # quality.py's run of each config, reused as is


def _alpha(value: float, tasks: tuple[str, ...] = ("seg", "cls")) -> list[str]:
    return [f"model.tasks.{task}.alpha={value}" for task in tasks]


def _only(kept: str) -> list[str]:
    return [f"model.tasks.{task}.alpha=0.0" for task in TASKS if task != kept]


def _feature_mode(mode: str) -> list[str]:
    return [f"model.feature_kd.{level}.loss.mode={mode}" for level in range(4)]


# the previous default, where this recipe was searched from: alpha 0.5 everywhere, det KD a mean over locations
FIRST_RECIPE = [*_alpha(0.5), "model.tasks.det.loss.normalize=mean"]

# group: {variant: cfg-options on top of KD_CONFIG}. [] is the recipe itself, None the scratch student, and
# (config, options) a variant that starts from another config than KD_CONFIG.
GROUPS = {
    "alpha": {"seg+cls alpha=0.3": _alpha(0.3), "seg+cls alpha=0.5": _alpha(0.5),
              "seg+cls alpha=0.7": _alpha(0.7), "seg+cls alpha=0.9": []},  # det alpha stays 0.5
    "det_alpha": {"det alpha=0.3": _alpha(0.3, ("det",)), "det alpha=0.5": [],
                  "det alpha=0.9": _alpha(0.9, ("det",))},  # seg and cls stay 0.9
    "temperature": {f"T={t}": [] if t == 2 else [f"model.tasks.seg.loss.temperature={t}",
                                                   f"model.tasks.cls.loss.temperature={t}"] for t in (1, 2, 4)},
    "per_task": {"scratch": None, "seg KD only": _only("seg"), "det KD only": _only("det"),
                 "cls KD only": _only("cls"), "all tasks": []},
    "det_kd": {"objectness-weighted, per teacher object": [],
               "plain MSE (no objectness weighting)": ["model.tasks.det.loss.objectness_weighted=False"],
               "objectness-weighted, mean over locations": ["model.tasks.det.loss.normalize=mean"],
               "objectness-weighted, on logits": ["model.tasks.det.loss.probabilities=False"]},
    "from_first_recipe": {"first recipe: alpha 0.5, det KD mean over locations": FIRST_RECIPE,
                          "+ seg/cls alpha 0.9": FIRST_RECIPE[-1:],
                          "+ det KD per teacher object": FIRST_RECIPE[:-1],
                          "+ both (the recipe)": []},
    "feature_kd": {"none": [], "PKD (Pearson), 4 levels": (FEAT_CONFIG, []),
                   "FitNets MSE, 4 levels": (FEAT_CONFIG, _feature_mode("mse"))},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS), help="which ablations")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--epochs", type=int, default=12,
                        help="train_cfg.max_epochs of every run, teacher included (as in benchmarks/quality.py)")
    parser.add_argument("--data", default=BENCH_DATA,
                        help=f"a synthetic set (tools/make_synthetic.py); the default, {BENCH_DATA}, is made when missing, "
                             f"with {BENCH_NUM_TEST} test images (train and val as the default set's)")
    parser.add_argument("--work-dir", default="work_dirs/bench/ablations", help="parent of the ablation runs")
    parser.add_argument("--quality-dir", default="work_dirs/bench/quality",
                        help="benchmarks/quality.py's work dir: the teacher and scratch runs")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="passed to every training run after --epochs, e.g. train_dataloader.num_workers=0")
    parser.add_argument("--out", default=str(RESULTS_DIR / "ablations.json"), help="JSON results file")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    return parser


def run_variant(variant: list[str] | tuple[str, list[str]] | None, seed: int, args: argparse.Namespace) -> dict:
    """One run: scratch (``None``), the recipe (``[]``), the recipe with options, or another config's."""
    quality = Path(args.quality_dir)
    common = [f"train_cfg.max_epochs={args.epochs}", *args.cfg_options]
    if variant is None:
        return train_and_test("configs/demo/student_scratch.py", quality / f"scratch_s{seed}", args.data, common,
                              seed, args.force)
    config, options = variant if isinstance(variant, tuple) else (KD_CONFIG, variant)
    teacher = quality / f"teacher_s{seed}"
    train_and_test("configs/demo/teacher.py", teacher, args.data, common, seed, False)
    common.append(f"model.teacher_checkpoint={teacher / 'best.pth'}")
    work_dir = Path(args.work_dir) / f"{run_name(config, options)}_s{seed}"
    if not options and config in QUALITY_RUNS:  # the very run quality.py trains: share it
        work_dir = quality / f"{QUALITY_RUNS[config]}_s{seed}"
    return train_and_test(config, work_dir, args.data, common + options, seed, args.force)


def run_name(config: str, options: list[str]) -> str:
    """A work-dir name that says what differs from the recipe: ``default``, ``det.alpha-0.0_cls.alpha-0.0``."""
    name = "_".join(o.split(".", 2)[-1].replace("=", "-") for o in options) or "default"
    return name if config == KD_CONFIG else f"{Path(config).stem}_{name}"


def summarize(results: dict) -> dict:
    """``{group: {variant: {split: {metric: {"mean", "std"}}}}}`` over the seeds run."""
    out: dict = {}
    for group, variants in results.items():
        out[group] = {}
        for variant, by_seed in variants.items():
            out[group][variant] = {split: {key: dict(zip(("mean", "std"),
                                                         mean_std([r[split][key] for r in by_seed.values()])))
                                           for key in QUALITY_KEYS} for split in ("val", "test")}
    return out


def format_tables(summary: dict, split: str = "test") -> str:
    """One markdown table per group on ``split``, with each variant's difference to the group's first row."""
    parts = []
    for group, variants in summary.items():
        names = list(variants)
        base = variants[names[0]][split]
        rows = []
        for name in names:
            test = variants[name][split]
            cells = [f"{test[k]['mean']:.2f}" + (f" ± {test[k]['std']:.2f}" if test[k]["std"] else "") +
                     ("" if name == names[0] else f" ({test[k]['mean'] - base[k]['mean']:+.2f})")
                     for k in QUALITY_KEYS]
            rows.append([name, *cells])
        parts.append(f"### {group} ({split} split; in brackets: vs {names[0]})\n\n"
                     + markdown_table(["variant", *QUALITY_KEYS], rows))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    check_data(parser, args.data)
    results: dict = {}
    for group in args.groups:
        results[group] = {}
        for variant, options in GROUPS[group].items():
            results[group][variant] = {seed: run_variant(options, seed, args) for seed in args.seeds}
    summary = summarize(results)
    print("\nval split: what settings are chosen by\n\n" + format_tables(summary, "val"))
    print("\ntest split: what is reported\n\n" + format_tables(summary, "test"))
    payload = {"summary": summary, "options": {g: GROUPS[g] for g in args.groups},
               "runs": {g: {v: {str(s): r for s, r in by_seed.items()} for v, by_seed in variants.items()}
                        for g, variants in results.items()}}
    print(f"\nwrote {write_results(args.out, 'ablations', payload, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
