"""Ablations of the distilled demo student: alpha, temperature, per-task KD, det KD form, feature KD.

    python benchmarks/ablations.py [--groups-file configs/ablations/demo_recipe.py]
                                   [--groups alpha det_alpha temperature per_task ...] [--seeds 0] [--epochs 12]

The experiments are data, not code: ``groups`` of the --groups-file (a config file read with
``Config.fromfile``) maps each group to its variants, each the plain output-KD recipe of
configs/demo/student_kd_plain.py with one thing changed through --cfg-options (or another config's, e.g.
the feature-KD one). The
``per_task`` group is made here from the KD config's ``model.tasks``: scratch, each task's KD alone, all
tasks. Every option must name a key its config has (checked before anything trains). Each variant is
distilled from the teacher of the same seed that benchmarks/quality.py trains (trained here when
missing), on quality.py's schedule (--epochs, 12 by default, every run). The teacher and scratch runs are
shared with quality.py's work dir. Numbers are each task's primary metric on the held-out test split; the
val split (which picked each best.pth) is the one to choose settings by. Prints one table per group for
each split and writes benchmarks/results/ablations.json.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (BENCH_DATA, BENCH_NUM_TEST, RESULTS_DIR, ROOT, check_data,  # noqa: E402
                               markdown_table, mean_std, quality_keys, train_and_test, write_results)
from mtkd.config import Config, ConfigError  # noqa: E402
from benchmarks.variants import METHODS  # noqa: E402

KD_CONFIG = "configs/demo/student_kd_plain.py"
TEACHER_CONFIG = "configs/demo/teacher.py"
SCRATCH_CONFIG = "configs/demo/student_scratch.py"
# quality.py's runs (config: run-dir prefix), reused as is: the plain recipe, + feature KD, issue #17's methods
QUALITY_RUNS = {KD_CONFIG: "kd", "configs/demo/student_kd_feat.py": "kd_feat",
                **{f"configs/demo/student_{config}.py": name.replace("+", "_") for name, config in METHODS.items()}}
GROUPS_FILE = "configs/ablations/demo_recipe.py"

Variant = tuple[str, list[str]] | None  # (config, cfg-options on top of it), or None: the scratch student


def per_task_group(kd_cfg: Config) -> dict[str, Variant]:
    """Scratch, each task of the KD config distilled alone (every other task's alpha 0), all tasks."""
    tasks = list(kd_cfg.model.tasks)
    group: dict[str, Variant] = {"scratch": None}
    for kept in tasks:
        group[f"{kept} KD only"] = (KD_CONFIG, [f"model.tasks.{task}.alpha=0.0" for task in tasks if task != kept])
    group["all tasks"] = (KD_CONFIG, [])
    return group


GENERATED = {"per_task": per_task_group}  # groups a groups file leaves as None: made from the KD config


def load_groups(path: str | Path = GROUPS_FILE) -> dict[str, dict[str, Variant]]:
    """``{group: {variant: (config, options) or None}}`` from a groups file, generated groups filled in."""
    groups = Config.fromfile(_repo_path(path)).to_dict().get("groups")
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError(f"{path}: expected groups = dict(<group>={{<variant>: [cfg-options]}}, ...)")
    kd_cfg = Config.fromfile(_repo_path(KD_CONFIG))
    out = {}
    for name, variants in groups.items():
        if variants is None:
            if name not in GENERATED:
                raise ValueError(f"{path}: group {name!r} is None, but only {sorted(GENERATED)} are generated")
            out[name] = GENERATED[name](kd_cfg)
        elif not isinstance(variants, Mapping) or not variants:
            raise ValueError(f"{path}: group {name!r} must be a non-empty {{<variant>: [cfg-options]}}, "
                             f"got {variants!r}")
        else:
            out[name] = {variant: _variant(spec, f"{path}: {name}/{variant}") for variant, spec in variants.items()}
    return out


def _variant(spec, where: str) -> Variant:
    """A file's variant, ``[options]`` or ``dict(config=..., options=[...])``, as ``(config, options)``."""
    config, options = (spec.get("config"), spec.get("options", [])) if isinstance(spec, Mapping) else (KD_CONFIG, spec)
    if not isinstance(config, str) or not isinstance(options, (list, tuple)) or not all(
            isinstance(o, str) and "=" in o for o in options):
        raise ValueError(f"{where}: expected a list of KEY=VALUE strings or dict(config=PATH, options=[...]), "
                         f"got {spec!r}")
    return config, list(options)


def option_errors(cfg: Mapping, options: Sequence[str]) -> list[str]:
    """What is wrong with ``options`` for ``cfg``: each ``a.b.c=value`` must name a key (or list index) it has."""
    errors = []
    for option in options:
        node, walked = cfg, []
        for key in option.split("=", 1)[0].split("."):
            if isinstance(node, list) and key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
                node = node[int(key)]
            elif isinstance(node, Mapping) and key in node:
                node = node[key]
            else:
                has = sorted(node) if isinstance(node, Mapping) else f"a {type(node).__name__}"
                errors.append(f"{option}: {'.'.join(walked) or 'the config'} has no {key!r} (has {has})")
                break
            walked.append(key)
    return errors


def _repo_path(path: str | Path) -> Path:
    """A path as given, else relative to the repository (the scripts may run from anywhere)."""
    return Path(path) if Path(path).exists() or Path(path).is_absolute() else ROOT / path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups-file", default=GROUPS_FILE,
                        help="config file whose groups = dict(<group>={<variant>: [cfg-options]}) are the ablations")
    parser.add_argument("--groups", nargs="+", help="which groups of the file (default: all, in its order)")
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


def select_groups(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, dict[str, Variant]]:
    """The --groups of the --groups-file, each variant's options checked against its config (usage errors)."""
    try:
        groups = load_groups(args.groups_file)
    except (OSError, ValueError, ConfigError) as err:
        parser.error(f"--groups-file {args.groups_file}: {err}")
    unknown = [name for name in args.groups or () if name not in groups]
    if unknown:
        parser.error(f"--groups {' '.join(unknown)}: not in {args.groups_file} (has {', '.join(groups)})")
    chosen = {name: groups[name] for name in args.groups or groups}
    configs: dict[str, dict] = {}
    for group, variants in chosen.items():
        for name, variant in variants.items():
            if variant is None:
                continue
            config, options = variant
            if config not in configs:
                configs[config] = Config.fromfile(_repo_path(config)).to_dict()
            errors = option_errors(configs[config], options)
            if errors:
                parser.error(f"{args.groups_file}: {group} / {name!r} on {config}: " + "; ".join(errors))
    return chosen


def run_variant(variant: Variant, seed: int, args: argparse.Namespace) -> dict:
    """One run: scratch (``None``), or ``(config, options)``: the recipe, the recipe with options, another config."""
    quality = Path(args.quality_dir)
    common = [f"train_cfg.max_epochs={args.epochs}", *args.cfg_options]
    if variant is None:
        return train_and_test(SCRATCH_CONFIG, quality / f"scratch_s{seed}", args.data, common, seed, args.force)
    config, options = variant
    teacher = quality / f"teacher_s{seed}"
    train_and_test(TEACHER_CONFIG, teacher, args.data, common, seed, False)
    common.append(f"model.teacher_checkpoint={teacher / 'best.pth'}")
    work_dir = Path(args.work_dir) / f"{run_name(config, options)}_s{seed}"
    if not options and config in QUALITY_RUNS:  # the very run quality.py trains: share it
        work_dir = quality / f"{QUALITY_RUNS[config]}_s{seed}"
    return train_and_test(config, work_dir, args.data, common + options, seed, args.force)


def run_name(config: str, options: list[str]) -> str:
    """A work-dir name that says what differs from the recipe: ``default``, ``<task>.alpha-0.0_<task>.alpha-0.0``."""
    name = "_".join(o.split(".", 2)[-1].replace("=", "-") for o in options) or "default"
    return name if config == KD_CONFIG else f"{Path(config).stem}_{name}"


def as_spec(variant: Variant) -> list[str] | dict | None:
    """A variant as a groups file writes it (for the JSON record)."""
    if variant is None:
        return None
    config, options = variant
    return list(options) if config == KD_CONFIG else {"config": config, "options": list(options)}


def summarize(results: dict) -> dict:
    """``{group: {variant: {split: {metric: {"mean", "std"}}}}}`` over the seeds run, for each task's primary
    metric (from the runs' results, in the first run's order); a run without a metric counts as NaN."""
    runs = [r for variants in results.values() for by_seed in variants.values() for r in by_seed.values()]
    keys = {split: quality_keys(r[split] for r in runs) for split in ("val", "test")}
    out: dict = {}
    for group, variants in results.items():
        out[group] = {}
        for variant, by_seed in variants.items():
            out[group][variant] = {split: {key: dict(zip(("mean", "std"), mean_std(
                [float(r[split].get(key, float("nan"))) for r in by_seed.values()]))) for key in keys[split]}
                for split in ("val", "test")}
    return out


def format_tables(summary: dict, split: str = "test") -> str:
    """One markdown table per group on ``split``, with each variant's difference to the group's first row."""
    parts = []
    for group, variants in summary.items():
        names = list(variants)
        base = variants[names[0]][split]
        keys = list(base)
        rows = []
        for name in names:
            test = variants[name][split]
            cells = [f"{test[k]['mean']:.2f}" + (f" ± {test[k]['std']:.2f}" if test[k]["std"] else "") +
                     ("" if name == names[0] else f" ({test[k]['mean'] - base[k]['mean']:+.2f})")
                     for k in keys]
            rows.append([name, *cells])
        parts.append(f"### {group} ({split} split; in brackets: vs {names[0]})\n\n"
                     + markdown_table(["variant", *keys], rows))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    groups = select_groups(parser, args)
    check_data(parser, args.data)
    results: dict = {}
    for group, variants in groups.items():
        results[group] = {}
        for name, variant in variants.items():
            results[group][name] = {seed: run_variant(variant, seed, args) for seed in args.seeds}
    summary = summarize(results)
    print("\nval split: what settings are chosen by\n\n" + format_tables(summary, "val"))
    print("\ntest split: what is reported\n\n" + format_tables(summary, "test"))
    payload = {"summary": summary, "groups_file": str(args.groups_file),
               "options": {g: {v: as_spec(x) for v, x in variants.items()} for g, variants in groups.items()},
               "runs": {g: {v: {str(s): r for s, r in by_seed.items()} for v, by_seed in variants.items()}
                        for g, variants in results.items()}}
    print(f"\nwrote {write_results(args.out, 'ablations', payload, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
