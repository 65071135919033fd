r"""Does distillation pay? Teachers vs student from scratch vs distilled students, over several seeds.

    python benchmarks/quality.py [--seeds 0 1 2] [--variants teacher scratch kd kd+feat] [--epochs 12]
                                 [--teacher-seeds S ...] [--data data/synthetic_bench]
                                 [--work-dir work_dirs/bench/quality]

Trains, per seed, each of --variants (default: the CPU demo teacher, the demo student from scratch, the
student distilled on all its tasks' outputs with their plain losses, configs/demo/student_kd_plain.py
(the recipe before issue #17), and the same plus feature KD,
configs/demo/student_kd_feat.py). A distilled variant is distilled from the teacher runs it names (see
``VARIANTS``), which are trained first whenever a selected variant needs them: by default each student
from the teachers of its own seed; ``--teacher-seeds 0`` trains one teacher set (seed 0) and distils the
student of every seed from it (``--teacher-seeds`` takes one seed, or one per --seeds entry, paired in
order). A student distilled from another seed's teachers runs in ``<variant>_s<seed>_t<teacher seed>``.
All runs share one schedule (the demo's AdamW + cosine, stretched to --epochs: 12 by default, 3x the
demo's 4, because at 4 epochs the teacher is far from trained) and the demo's augmentations; the
checkpoint kept is the best on the val split (500 images), and the numbers reported are on the held-out
test split, 2000 images in the --data set this script makes when it is missing (same train and val as
the default set). The metrics compared are each task's primary one, as tools/test.py reports it for the
teacher (then any task only another run has); a teacher with fewer tasks (a one-task specialist) is
measured on its own tasks only. Prints a table of mean +- std and writes benchmarks/results/quality.json.
Finished runs are reused (best.pth and the log's closing line are there) unless --force; their metrics
too, unless the split they were measured on has another size now or they name no primary metrics. A run
killed mid-training is moved to <run>.unfinished and redone.

Variants besides the default four: ``kd+unc`` and ``kd+dwa`` (student_kd_plain.py with
``model.task_weighting.type`` UncertaintyWeighting / DWA; every task's ratio there is 1, as a learned
weighting requires), one ``teacher_<task>`` per one-task specialist teacher of
configs/demo/student_kd_specialists.py (its default checkpoint ``work_dirs/demo/teacher_<task>/best.pth``
names the config, ``configs/demo/teacher_<task>.py``, and the variant), ``kd_spec`` (the student
distilled from those specialists, each task from its own) and ``kd_spec+unc``, ``kd_spec+dwa``;
``kd_mix`` (configs/demo/student_kd_mixed.py: specialists for seg, det and depth, the multi-task teacher
for cls) and ``kd_mix+unc``, ``kd_mix+dwa``; ``kd+ls``, ``dkd_cwd``, ``crosskd`` (issue #17: logit
standardization, DKD for cls and CWD for seg, CrossKD for det and seg, configs/demo/student_<name>.py),
``kd_best`` (the best output-KD combination on val, configs/demo/student_kd_ls_t1.py: logit
standardization at T=1) and ``kd_best+feat`` (the same plus PKD feature KD: the demo's default,
configs/demo/student_kd.py). The
tables add a ``specialists`` row: each task's metric from the specialist that teaches it (its "train
min" is the specialists' sum), and the kd_spec rows' gap closed relative to it as well as to the
multi-task teacher. Issue #16 (one multi-task teacher vs four specialists of its width, then fixed vs
uncertainty vs DWA weighting on the better set; swap in ``kd+unc kd+dwa`` if the multi-task teacher wins,
finished runs are reused):

    python benchmarks/quality.py --seeds 0 1 2 --variants teacher scratch kd kd_spec kd_spec+unc kd_spec+dwa \
        --out benchmarks/results/teachers.json --work-dir work_dirs/bench/teachers [--teacher-seeds 0]

Issue #17 (the stronger losses side by side, then their best combination with and without feature KD):

    python benchmarks/quality.py --seeds 0 1 2 --teacher-seeds 0 --variants teacher scratch kd kd+ls dkd_cwd \
        crosskd kd_best kd_best+feat --out benchmarks/results/stronger_kd.json --work-dir work_dirs/bench/kd17

CPU time, from README "Results" (2-core CPU, 3-task models: teacher ~7.7 min, student ~7.4 min a run at
12 epochs; the 4-task models are 26% larger, so expect more). Per seed: the multi-task teacher and four
specialists (one head each, at most the teacher's time), ~35 min of teachers; scratch ~6, kd ~7.5 and three
kd_spec students at ~11 min each (four teacher forwards a step instead of one: 1.55x kd's step,
benchmarks/results/overhead_teachers_cpu.json), ~47 min of students. 3 seeds: ~4 h; with --teacher-seeds 0
(the teachers once): ~35 + 3 x 47 min, ~3 h. kd+unc and kd+dwa add ~45 min.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (BENCH_DATA, BENCH_NUM_TEST, RESULTS_DIR, ROOT, check_data,  # noqa: E402
                               finished, markdown_table, mean_std, primary_metrics, train_and_test, write_results)
from mtkd.config import Config  # noqa: E402

from benchmarks.variants import (ASSEMBLED, DEFAULT_VARIANTS, KD_CONFIG, REFERENCE,  # noqa: E402,F401
                                 SPECIALISTS_CONFIG, VARIANTS, WEIGHTINGS, Variant, build_variants, needed,
                                 specialist_teachers, teacher_variants, weighted)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (data is fixed)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                        help="which runs (the teachers a distilled variant needs are trained whenever it is chosen)")
    parser.add_argument("--teacher-seeds", type=int, nargs="+", metavar="S",
                        help="the seeds the teachers are trained at: one for every student seed, or one per --seeds "
                             "entry (paired in order); default: each student's own seed")
    parser.add_argument("--epochs", type=int, default=12,
                        help="train_cfg.max_epochs of every run, teacher included (the demo configs say 4)")
    parser.add_argument("--data", default=BENCH_DATA,
                        help=f"a synthetic set (tools/make_synthetic.py); the default, {BENCH_DATA}, is made when missing, "
                             f"with {BENCH_NUM_TEST} test images (train and val as the default set's)")
    parser.add_argument("--work-dir", default="work_dirs/bench/quality", help="parent of every run's work dir")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="passed to every training run after --epochs, e.g. train_dataloader.num_workers=0")
    parser.add_argument("--teacher-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="added for the teacher runs only (every variant a student is distilled from), e.g. "
                             "train_cfg.max_epochs=24 for teachers trained longer than the students (use its own "
                             "--work-dir)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "quality.json"), help="JSON results file")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the runs of the selection that have finished (e.g. runs "
                             "trained by several concurrent invocations, some still going) and list the others")
    return parser


def teacher_seed_of(args: argparse.Namespace) -> dict[int, int]:
    """``{student seed: the seed of the teachers it is distilled from}``."""
    teacher_seeds = args.teacher_seeds or args.seeds
    if len(teacher_seeds) == 1:
        teacher_seeds = teacher_seeds * len(args.seeds)
    return dict(zip(args.seeds, teacher_seeds))


def run_dir(work: Path, name: str, seed: int, teacher_seed: int | None = None) -> Path:
    """``<name>_s<seed>`` ('+' as '_'), plus ``_t<teacher seed>`` when distilled from another seed's teachers."""
    suffix = f"_t{teacher_seed}" if teacher_seed is not None and teacher_seed != seed else ""
    return work / f"{name.replace('+', '_')}_s{seed}{suffix}"


def run_all(args: argparse.Namespace) -> dict:
    """``{variant: {seed: {"val", "test", "seconds"[, "teacher_seed"]}}}``, teachers before their students.

    A teacher variant's runs are keyed by the teacher seeds; a teacher seed shared by several student
    seeds is trained once. With ``--report-only`` a run that has not finished is left out and its work dir
    added to ``args.missing``.
    """
    teachers, names = teacher_variants(), needed(args.variants)
    runs: dict = {name: {} for name in names}
    for seed, teacher_seed in teacher_seed_of(args).items():
        for name in (n for n in names if n in teachers and teacher_seed not in runs[n]):
            runs[name][teacher_seed] = run_variant(args, name, teacher_seed)
        for name in (n for n in names if n not in teachers):
            runs[name][seed] = run_variant(args, name, seed, teacher_seed)
    return {name: {s: r for s, r in by_seed.items() if r is not None} for name, by_seed in runs.items()
            if any(r is not None for r in by_seed.values())}


def run_variant(args: argparse.Namespace, name: str, seed: int, teacher_seed: int | None = None) -> dict | None:
    """Train and test one variant at ``seed``, distilled from its teachers' runs at ``teacher_seed`` (None:
    ``--report-only`` and the run has not finished)."""
    work, variant = Path(args.work_dir), VARIANTS[name]
    options = [f"train_cfg.max_epochs={args.epochs}", *variant.options, *args.cfg_options]
    options += list(args.teacher_options) if name in teacher_variants() else []
    options += [f"{key}={run_dir(work, teacher, teacher_seed) / 'best.pth'}"
                for key, teacher in variant.teachers.items()]
    work_dir = run_dir(work, name, seed, teacher_seed if variant.teachers else None)
    if getattr(args, "report_only", False) and not finished(work_dir):
        args.missing = [*getattr(args, "missing", []), work_dir.as_posix()]
        return None
    result = train_and_test(variant.config, work_dir, args.data, options, seed, args.force)
    return {**result, "teacher_seed": teacher_seed} if variant.teachers else result


def run_primary(runs: dict, split: str = "test") -> dict[str, str]:
    """``{task: primary metric key}`` from the runs' results in order (the teacher's first)."""
    return primary_metrics(r[split] for by_seed in runs.values() for r in by_seed.values())


def run_keys(runs: dict, split: str = "test") -> list[str]:
    """Each task's primary metric key, from the runs' results in order (the teacher's first)."""
    return list(run_primary(runs, split).values())


def summarize(runs: dict, split: str = "test") -> dict:
    """Mean/std per variant and metric, and for each distilled variant the comparison with scratch.

    A distilled student "beats scratch" on a task when its mean exceeds scratch's by more than the larger
    of the two standard deviations; "gap closed" is (KD - scratch) / (teacher - scratch), in [.., 1], with
    the multi-task teacher's row. A student of several teachers (the specialists) is also compared with its
    own: a row assembled from each task's metric of the teacher that teaches it ("own_gap_closed").
    The paired view compares each seed's distilled run with the scratch run of the same seed (same student
    init, same data order): the mean and std of those differences and how many seeds the student won.
    A metric no run of a variant has (a task it lacks) is left out of its stats; one some runs lack is NaN.
    """
    primary = run_primary(runs, split)
    keys = list(primary.values())
    stats = {name: variant_stats(by_seed, split, keys) for name, by_seed in runs.items()}
    references = assembled_references(runs, primary)
    for row, reference in references.items():
        stats[row] = assembled_stats(stats, reference["from"])
    summary: dict = {"split": split, "keys": keys, "stats": stats, "references": references, "comparisons": {}}
    if "scratch" not in stats:
        return summary
    for name in (n for n in runs if n in VARIANTS and VARIANTS[n].teachers):
        summary["comparisons"][name] = compare(name, stats, runs, split, own_row(name, stats, references))
    return summary


def variant_stats(by_seed: dict, split: str, keys: list[str]) -> dict:
    """``{key: {"mean", "std"}, "seeds": [...]}`` over a variant's runs; a key none of them has is left out."""
    stats: dict = {}
    for key in keys:
        if any(key in r[split] for r in by_seed.values()):
            mean, std = mean_std([_value(r, split, key) for r in by_seed.values()])
            stats[key] = {"mean": mean, "std": std}
    stats["seeds"] = sorted(by_seed)
    return stats


def assembled_references(runs: dict, primary: dict[str, str]) -> dict[str, dict]:
    """``{row: {"from": {key: teacher variant}, "of": [students]}}`` for each run set of several teachers.

    Each task's key comes from the teacher that teaches the task in the student's config. The row is
    ``specialists`` when each teacher teaches one task (else ``teachers of <student>``).
    """
    references: dict[str, dict] = {}
    for name in (n for n in runs if n in VARIANTS and len(set(VARIANTS[n].teachers.values())) > 1):
        by_task = taught_by(VARIANTS[name])
        source = {primary[task]: teacher for task, teacher in by_task.items()
                  if task in primary and teacher in runs}
        same = [row for row, ref in references.items() if ref["from"] == source]
        if same:
            references[same[0]]["of"].append(name)
            continue
        one_task_each = len(set(by_task.values())) == len(by_task)
        row = ASSEMBLED if one_task_each and ASSEMBLED not in references else f"teachers of {name}"
        references[row] = {"from": source, "of": [name]}
    return references


def assembled_stats(stats: dict, source: dict[str, str]) -> dict:
    """A row of each key's stats from the teacher variant it comes from; its seeds are the teachers'."""
    row: dict = {key: stats[teacher][key] for key, teacher in source.items() if key in stats[teacher]}
    row["seeds"] = sorted({s for teacher in set(source.values()) for s in stats[teacher]["seeds"]})
    row["from"] = dict(source)
    return row


def taught_by(variant: Variant) -> dict[str, str]:
    """``{task: teacher variant}`` of a distilled variant: its config's ``model.tasks.<t>.teacher`` (the
    teacher set under ``model.teachers``), or its only teacher for a task that names none."""
    only = set(variant.teachers.values())
    out = {}
    for task, teacher in _task_teachers(variant.config).items():
        key = f"model.teachers.{teacher}.checkpoint"
        if key in variant.teachers:
            out[task] = variant.teachers[key]
        elif teacher is None and len(only) == 1:
            out[task] = next(iter(only))
    return out


@functools.lru_cache(maxsize=None)
def _task_teachers(config: str) -> dict[str, str | None]:
    """``{task: the teacher name its model.tasks entry gives, or None}`` of a distillation config."""
    return {task: (spec or {}).get("teacher") for task, spec in Config.fromfile(ROOT / config).model.tasks.items()}


def own_row(name: str, stats: dict, references: dict) -> str | None:
    """The row a student's own teachers make, when it is not the multi-task teacher's (else None)."""
    rows = [row for row, ref in references.items() if name in ref["of"]]
    teachers = set(VARIANTS[name].teachers.values())
    if not rows and len(teachers) == 1:
        rows = list(teachers)
    return rows[0] if rows and rows[0] != REFERENCE and rows[0] in stats else None


def compare(name: str, stats: dict, runs: dict, split: str, own: str | None) -> dict:
    """One distilled variant vs scratch per key: delta, verdict, paired view, gap closed (and vs ``own``)."""
    per_task, gaps, own_gaps = {}, [], []
    for key, scratch in ((k, v) for k, v in stats["scratch"].items() if k in stats[name] and k != "seeds"):
        kd = stats[name][key]
        delta, std = kd["mean"] - scratch["mean"], max(kd["std"], scratch["std"])
        entry = {"delta": delta, "std": std, "beats_scratch": bool(delta > std),
                 "paired": paired_differences(runs[name], runs["scratch"], split, key),
                 **gap_closed(stats.get(REFERENCE, {}).get(key), scratch, delta, gaps)}
        if own is not None:
            entry.update({f"own_{k}": v for k, v in gap_closed(stats[own].get(key), scratch, delta, own_gaps).items()})
        per_task[key] = entry
    comparison = {"per_task": per_task,
                  "beats_scratch_on_every_task": all(e["beats_scratch"] for e in per_task.values()),
                  "mean_gap_closed": _mean(gaps)}
    if own is not None:
        comparison.update(own_teachers=own, mean_own_gap_closed=_mean(own_gaps))
    return comparison


def gap_closed(teacher: dict | None, scratch: dict, delta: float, gaps: list[float]) -> dict:
    """``{"teacher_gap", "gap_closed"}`` against a teacher's stats (none when it lacks the key); appends to gaps."""
    if teacher is None:
        return {}
    gap = teacher["mean"] - scratch["mean"]
    if gap > 0:
        gaps.append(delta / gap)
    return {"teacher_gap": gap, "gap_closed": delta / gap if gap > 0 else None}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def paired_differences(distilled: dict, scratch: dict, split: str, key: str) -> dict:
    """Per seed run by both: distilled minus scratch; their mean, std and count of seeds the student won."""
    seeds = sorted(set(distilled) & set(scratch))
    deltas = [_value(distilled[s], split, key) - _value(scratch[s], split, key) for s in seeds]
    mean, std = mean_std(deltas)
    return {"seeds": seeds, "deltas": deltas, "mean": mean, "std": std, "wins": sum(d > 0 for d in deltas)}


def _value(run: dict, split: str, key: str) -> float:
    return float(run[split].get(key, float("nan")))


def format_summary(summary: dict, runs: dict, protocol: dict | None = None) -> str:
    """The quality table (mean +- std over seeds), the distilled-vs-scratch tables, and what the rows are."""
    stats, keys, references = summary["stats"], summary["keys"], summary.get("references", {})
    rows = []
    for name in runs:
        rows += [_stats_row(row, stats[row], _assembled_minutes(runs, ref["from"]))
                 for row, ref in references.items() if ref["of"][0] == name]
        seconds = [r["seconds"] for r in runs[name].values() if r["seconds"] is not None]
        rows.append(_stats_row(name, stats[name], sum(seconds) / len(seconds) / 60 if seconds else None))
    text = (f"{summary['split']} split, mean ± std over seeds\n\n"
            + markdown_table(["run", "seeds", *keys, "train min"], [[r[0], r[1], *[r[2].get(k, "-") for k in keys],
                                                                    r[3]] for r in rows]))
    notes = [teacher_seeds_note(protocol)] if protocol else []
    notes += [f"{row}: each task's metric from the teacher that teaches it to {', '.join(ref['of'])} ("
              + ", ".join(f"{key}: {teacher}" for key, teacher in ref["from"].items())
              + "); train min is their sum" for row, ref in references.items()]
    text += "".join(f"\n\n{note}" for note in notes)
    comparisons = summary["comparisons"]
    if comparisons:
        text += "\n\n" + format_comparisons(comparisons, keys)
    return text


def _stats_row(name: str, stats: dict, minutes: float | None) -> tuple:
    """``(name, seeds, {key: "mean ± std"}, train min)``; a key the row lacks is left out (printed "-")."""
    cells = {k: f"{v['mean']:.2f} ± {v['std']:.2f}" for k, v in stats.items() if isinstance(v, dict) and "mean" in v}
    return name, len(stats["seeds"]), cells, "-" if minutes is None else f"{minutes:.1f}"


def _assembled_minutes(runs: dict, source: dict[str, str]) -> float | None:
    """The summed mean training minutes of an assembled row's teachers (None if one is unknown)."""
    total = 0.0
    for teacher in dict.fromkeys(source.values()):
        seconds = [r["seconds"] for r in runs[teacher].values() if r["seconds"] is not None]
        if not seconds:
            return None
        total += sum(seconds) / len(seconds) / 60
    return total


def teacher_seeds_note(protocol: dict) -> str:
    """Which teachers the students were distilled from: their own seed's, or the --teacher-seeds ones."""
    pairs = protocol["teacher_seed_of"]
    if protocol.get("teacher_seeds") is None or all(int(s) == t for s, t in pairs.items()):
        return "teachers: each student distilled from the teachers trained at its own seed"
    return ("teachers: trained at seed " + ", ".join(str(s) for s in sorted(set(pairs.values()))) + " (--teacher-seeds "
            + " ".join(str(s) for s in protocol["teacher_seeds"]) + "); student seed -> teacher seed: "
            + ", ".join(f"{s} -> {t}" for s, t in pairs.items()))


def format_comparisons(comparisons: dict, keys: list[str]) -> str:
    """vs scratch (Δ, verdict, gap closed to the multi-task teacher), vs own teachers, paired by seed."""
    header = ["distilled", *[f"{k} Δ (gap closed)" for k in keys], "beats scratch on all", "mean gap closed"]
    rows = [[name, *[_delta_cell(comp["per_task"].get(k)) for k in keys],
             "yes" if comp["beats_scratch_on_every_task"] else "no", _percent(comp["mean_gap_closed"])]
            for name, comp in comparisons.items()]
    text = (f"vs scratch: Δ = mean difference, ✓ when larger than the larger std; gap closed = "
            f"Δ / ({REFERENCE} - scratch), {REFERENCE} = the multi-task teacher\n\n" + markdown_table(header, rows))
    own = {name: comp for name, comp in comparisons.items() if comp.get("own_teachers")}
    if own:
        header = ["distilled", "own teachers", *[f"{k} gap closed" for k in keys], "mean gap closed"]
        rows = [[name, comp["own_teachers"], *[_percent((comp["per_task"].get(k) or {}).get("own_gap_closed"))
                                               for k in keys], _percent(comp["mean_own_gap_closed"])]
                for name, comp in own.items()]
        text += ("\n\nvs its own teachers: gap closed = Δ / (own teachers - scratch), the row of the teachers the "
                 "student was distilled from\n\n" + markdown_table(header, rows))
    header = ["distilled", *[f"{k} paired Δ (wins)" for k in keys]]
    rows = [[name, *[_paired_cell(comp["per_task"][k]["paired"]) if k in comp["per_task"] else "-" for k in keys]]
            for name, comp in comparisons.items()]
    return text + ("\n\npaired by seed: distilled minus scratch of the same seed, mean ± std over seeds "
                   "(seeds where the distilled student is ahead)\n\n" + markdown_table(header, rows))


def _delta_cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['delta']:+.2f} {'✓' if entry['beats_scratch'] else '✗'} ({_percent(entry.get('gap_closed'))})"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _paired_cell(paired: dict) -> str:
    return f"{paired['mean']:+.2f} ± {paired['std']:.2f} ({paired['wins']}/{len(paired['seeds'])})"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.teacher_seeds is not None and len(args.teacher_seeds) not in (1, len(args.seeds)):
        parser.error(f"--teacher-seeds takes one seed or one per --seeds entry ({len(args.seeds)}), "
                     f"got {len(args.teacher_seeds)}")
    check_data(parser, args.data)
    runs = run_all(args)
    protocol = {"seeds": args.seeds, "teacher_seeds": args.teacher_seeds, "epochs": args.epochs,
                "teacher_seed_of": {str(s): t for s, t in teacher_seed_of(args).items()},
                "not_finished": getattr(args, "missing", [])}
    if protocol["not_finished"]:
        print("left out, not finished (--report-only): " + ", ".join(protocol["not_finished"]))
    summary = summarize(runs)
    print("\n" + format_summary(summary, runs, protocol))
    payload = {"protocol": protocol, "summary": summary, "val_summary": summarize(runs, "val"),
               "runs": {name: {str(seed): r for seed, r in by_seed.items()} for name, by_seed in runs.items()}}
    print(f"\nwrote {write_results(args.out, 'quality', payload, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
