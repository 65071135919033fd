"""Does distillation pay? Teacher vs student from scratch vs distilled students, over several seeds.

    python benchmarks/quality.py [--seeds 0 1 2] [--epochs 12] [--data data/synthetic_bench]
                                 [--work-dir work_dirs/bench/quality]

Trains, per seed, the CPU demo teacher, the demo student from scratch, the student distilled on all
its tasks' outputs (configs/demo/student_kd.py) and the same plus feature KD
(configs/demo/student_kd_feat.py); each student run is distilled from the teacher of its own seed. All
runs share one schedule (the demo's AdamW + cosine, stretched to --epochs: 12 by default, 3x the demo's
4, because at 4 epochs the teacher is far from trained) and the demo's augmentations; the checkpoint kept
is the best on the val split (500 images), and the numbers reported are on the held-out test split,
2000 images in the --data set this script makes when it is missing (same train and val as the default
set). The metrics compared are each task's primary one, as tools/test.py reports it for the teacher
(then any task only a student has). Prints a table of mean +- std and writes benchmarks/results/quality.json.
Finished runs are reused (best.pth and the log's closing line are there) unless --force; their metrics
too, unless the split they were measured on has another size now or they name no primary metrics. A run
killed mid-training is moved to <run>.unfinished and redone.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (BENCH_DATA, BENCH_NUM_TEST, RESULTS_DIR, check_data,  # noqa: E402
                               markdown_table, mean_std, quality_keys, train_and_test, write_results)

VARIANTS = {  # name: (config, distilled from the teacher?)
    "teacher": ("configs/demo/teacher.py", False),
    "scratch": ("configs/demo/student_scratch.py", False),
    "kd": ("configs/demo/student_kd.py", True),
    "kd+feat": ("configs/demo/student_kd_feat.py", True),
}
STUDENTS = ("kd", "kd+feat")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (data is fixed)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="which runs (the teacher is trained whenever a distilled variant needs it)")
    parser.add_argument("--epochs", type=int, default=12,
                        help="train_cfg.max_epochs of every run, teacher included (the demo configs say 4)")
    parser.add_argument("--data", default=BENCH_DATA,
                        help=f"a synthetic set (tools/make_synthetic.py); the default, {BENCH_DATA}, is made when missing, "
                             f"with {BENCH_NUM_TEST} test images (train and val as the default set's)")
    parser.add_argument("--work-dir", default="work_dirs/bench/quality", help="parent of every run's work dir")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="passed to every training run after --epochs, e.g. train_dataloader.num_workers=0")
    parser.add_argument("--teacher-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="added for the teacher runs only, e.g. train_cfg.max_epochs=24 for a teacher trained "
                             "longer than the students (use its own --work-dir)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "quality.json"), help="JSON results file")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    return parser


def run_all(args: argparse.Namespace) -> dict:
    """``{variant: {seed: {"val", "test", "seconds"}}}``, teacher first so students can use it."""
    work = Path(args.work_dir)
    needs_teacher = any(VARIANTS[name][1] for name in args.variants)
    names = [n for n in VARIANTS if n in args.variants or (n == "teacher" and needs_teacher)]
    runs: dict = {name: {} for name in names}
    for seed in args.seeds:
        for name in names:
            config, distilled = VARIANTS[name]
            options = [f"train_cfg.max_epochs={args.epochs}", *args.cfg_options]
            options += list(args.teacher_options) if name == "teacher" else []
            if distilled:
                options.append(f"model.teacher_checkpoint={work / f'teacher_s{seed}' / 'best.pth'}")
            runs[name][seed] = train_and_test(config, work / f"{name.replace('+', '_')}_s{seed}", args.data,
                                              options, seed, args.force)
    return {name: by_seed for name, by_seed in runs.items() if by_seed}


def run_keys(runs: dict, split: str = "test") -> list[str]:
    """Each task's primary metric key, from the runs' results in order (the teacher's first)."""
    return quality_keys(r[split] for by_seed in runs.values() for r in by_seed.values())


def summarize(runs: dict, split: str = "test") -> dict:
    """Mean/std per variant and metric, and for each distilled variant the comparison with scratch.

    A distilled student "beats scratch" on a task when its mean exceeds scratch's by more than the larger
    of the two standard deviations; "gap closed" is (KD - scratch) / (teacher - scratch), in [.., 1].
    The paired view compares each seed's distilled run with the scratch run of the same seed (same student
    init, same data order): the mean and std of those differences and how many seeds the student won.
    A run without a metric (a task it does not have) counts as NaN.
    """
    keys = run_keys(runs, split)
    stats = {name: {key: dict(zip(("mean", "std"), mean_std([_value(r, split, key) for r in by_seed.values()])))
                    for key in keys} for name, by_seed in runs.items()}
    for name in stats:
        stats[name]["seeds"] = sorted(runs[name])
    summary: dict = {"split": split, "keys": keys, "stats": stats, "comparisons": {}}
    if "scratch" not in stats:
        return summary
    for name in (n for n in STUDENTS if n in stats):
        per_task, gaps = {}, []
        for key in keys:
            kd, scratch = stats[name][key], stats["scratch"][key]
            delta = kd["mean"] - scratch["mean"]
            entry = {"delta": delta, "std": max(kd["std"], scratch["std"]),
                     "beats_scratch": bool(delta > max(kd["std"], scratch["std"])),
                     "paired": paired_differences(runs[name], runs["scratch"], split, key)}
            if "teacher" in stats:
                gap = stats["teacher"][key]["mean"] - scratch["mean"]
                entry["teacher_gap"] = gap
                entry["gap_closed"] = delta / gap if gap > 0 else None
                if gap > 0:
                    gaps.append(delta / gap)
            per_task[key] = entry
        summary["comparisons"][name] = {
            "per_task": per_task, "beats_scratch_on_every_task": all(e["beats_scratch"] for e in per_task.values()),
            "mean_gap_closed": sum(gaps) / len(gaps) if gaps else None}
    return summary


def paired_differences(distilled: dict, scratch: dict, split: str, key: str) -> dict:
    """Per seed run by both: distilled minus scratch; their mean, std and count of seeds the student won."""
    seeds = sorted(set(distilled) & set(scratch))
    deltas = [_value(distilled[s], split, key) - _value(scratch[s], split, key) for s in seeds]
    mean, std = mean_std(deltas)
    return {"seeds": seeds, "deltas": deltas, "mean": mean, "std": std, "wins": sum(d > 0 for d in deltas)}


def _value(run: dict, split: str, key: str) -> float:
    return float(run[split].get(key, float("nan")))


def format_summary(summary: dict, runs: dict) -> str:
    """The quality table (mean +- std over seeds) and the distilled-vs-scratch comparison table."""
    stats, keys = summary["stats"], summary["keys"]
    header = ["run", "seeds", *keys, "train min"]
    rows = []
    for name, by_seed in runs.items():
        seconds = [r["seconds"] for r in by_seed.values() if r["seconds"] is not None]
        cells = [f"{stats[name][k]['mean']:.2f} ± {stats[name][k]['std']:.2f}" for k in keys]
        rows.append([name, len(by_seed), *cells, f"{sum(seconds) / len(seconds) / 60:.1f}" if seconds else "-"])
    text = f"{summary['split']} split, mean ± std over seeds\n\n" + markdown_table(header, rows)
    comparisons = summary["comparisons"]
    if comparisons:
        header = ["distilled", *[f"{k} Δ (gap closed)" for k in keys], "beats scratch on all",
                  "mean gap closed"]
        rows = []
        for name, comp in comparisons.items():
            cells = []
            for key in keys:
                entry = comp["per_task"][key]
                closed = entry.get("gap_closed")
                mark = "✓" if entry["beats_scratch"] else "✗"
                cells.append(f"{entry['delta']:+.2f} {mark} ({'-' if closed is None else f'{closed:.0%}'})")
            mean_gap = comp["mean_gap_closed"]
            rows.append([name, *cells, "yes" if comp["beats_scratch_on_every_task"] else "no",
                         "-" if mean_gap is None else f"{mean_gap:.0%}"])
        text += ("\n\nvs scratch: Δ = mean difference, ✓ when larger than the larger std; gap closed = "
                 "Δ / (teacher - scratch)\n\n" + markdown_table(header, rows))
        header = ["distilled", *[f"{k} paired Δ (wins)" for k in keys]]
        rows = [[name, *[_paired_cell(comp["per_task"][k]["paired"]) for k in keys]]
                for name, comp in comparisons.items()]
        text += ("\n\npaired by seed: distilled minus scratch of the same seed, mean ± std over seeds "
                 "(seeds where the distilled student is ahead)\n\n" + markdown_table(header, rows))
    return text


def _paired_cell(paired: dict) -> str:
    return f"{paired['mean']:+.2f} ± {paired['std']:.2f} ({paired['wins']}/{len(paired['seeds'])})"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    check_data(parser, args.data)
    runs = run_all(args)
    summary = summarize(runs)
    print("\n" + format_summary(summary, runs))
    payload = {"summary": summary, "val_summary": summarize(runs, "val"),
               "runs": {name: {str(seed): r for seed, r in by_seed.items()} for name, by_seed in runs.items()}}
    print(f"\nwrote {write_results(args.out, 'quality', payload, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
