"""Which term drives each distilled run: every task's hard and soft loss at one epoch, from the runs' logs.

    python benchmarks/loss_scales.py [--work-dir work_dirs/bench/kd17] [--runs kd kd_ls crosskd ...] [--epoch N]

For each distilled run in --work-dir (a folder with ``config.py`` and ``metrics.jsonl``, as tools/train.py
leaves it; ``<name>_s<seed>[_t<teacher seed>]``, as benchmarks/quality.py names them) it reads the epoch's
mean training losses ``train/<task>/hard`` and ``train/<task>/soft`` (the last epoch unless --epoch) and
the task's alpha from the run's config, and reports, as a mean over the seeds of each name, hard | soft |
the soft term's share of the task loss, ``alpha * soft / ((1 - alpha) * hard + alpha * soft)``, plus the
feature-KD terms' sum where there are any. A soft loss that is tiny next to its hard loss teaches little
whatever its alpha; one that dominates can starve the task of its ground truth. Prints a table and writes
benchmarks/results/loss_scales.json.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, markdown_table, mean_std, write_results  # noqa: E402
from mtkd.config import Config  # noqa: E402

RUN_NAME = re.compile(r"^(?P<name>.+)_s(?P<seed>\d+)(_t\d+)?$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="work_dirs/bench/kd17", help="the runs' parent folder")
    parser.add_argument("--runs", nargs="+", metavar="NAME",
                        help="run names without the seed suffix (default: every distilled run found)")
    parser.add_argument("--epoch", type=int, help="the epoch to read (default: each run's last)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "loss_scales.json"), help="JSON results file")
    return parser


def read_run(work_dir: Path, epoch: int | None = None) -> dict | None:
    """``{task: {"hard", "soft", "alpha", "soft_share"}, "feature_kd": sum | None, "epoch"}`` for a distilled
    run; None for a run without soft losses (a teacher, a student from scratch)."""
    cfg = Config.fromfile(work_dir / "config.py")
    if cfg.model.get("type") != "Distiller":
        return None
    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{work_dir / 'metrics.jsonl'}: no epoch logged yet")
    chosen = [r for r in records if epoch is None or r["epoch"] == epoch]
    if not chosen:
        raise ValueError(f"{work_dir / 'metrics.jsonl'}: no epoch {epoch} (epochs {records[0]['epoch']}-"
                         f"{records[-1]['epoch']})")
    record = chosen[-1]
    out: dict = {"epoch": record["epoch"]}
    for task, spec in cfg.model.tasks.items():
        hard, soft = record.get(f"train/{task}/hard"), record.get(f"train/{task}/soft")
        if hard is None or soft is None:
            continue
        alpha = float(spec["alpha"])
        total = (1 - alpha) * hard + alpha * soft
        out[task] = {"hard": hard, "soft": soft, "alpha": alpha, "soft_share": alpha * soft / total if total else None}
    features = [v for k, v in record.items() if k.startswith("train/feat/") and v is not None]
    out["feature_kd"] = sum(features) if features else None
    return out


def collect(work: Path, names: list[str] | None, epoch: int | None) -> dict[str, dict[int, dict]]:
    """``{name: {seed: read_run(...)}}`` for the distilled runs under ``work``, in the order of ``names``."""
    runs: dict[str, dict[int, dict]] = {}
    for folder in sorted(p for p in work.iterdir() if (p / "config.py").is_file() and (p / "metrics.jsonl").is_file()):
        match = RUN_NAME.match(folder.name)
        if match is None or (names and match["name"] not in names):
            continue
        record = read_run(folder, epoch)
        if record is not None:
            runs.setdefault(match["name"], {})[int(match["seed"])] = record
    missing = [n for n in names or [] if n not in runs]
    if missing:
        raise FileNotFoundError(f"{work}: no distilled run named {', '.join(missing)} (<name>_s<seed> folders "
                                f"with config.py and metrics.jsonl); found: {', '.join(runs) or 'none'}")
    return {n: runs[n] for n in (names or sorted(runs))}


def summarize(runs: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Mean and std over seeds of every number :func:`read_run` gives, per run name and task."""
    summary = {}
    for name, by_seed in runs.items():
        records = list(by_seed.values())
        tasks = [t for t in records[0] if isinstance(records[0][t], dict)]
        row: dict = {"seeds": sorted(by_seed), "epoch": sorted({r["epoch"] for r in records})}
        for task in tasks:
            row[task] = {key: mean_std([r[task][key] for r in records if task in r and r[task][key] is not None])
                         for key in ("hard", "soft", "soft_share")}
            row[task]["alpha"] = records[0][task]["alpha"]
        features = [r["feature_kd"] for r in records if r["feature_kd"] is not None]
        row["feature_kd"] = mean_std(features) if features else None
        summary[name] = row
    return summary


def format_table(summary: dict[str, dict]) -> str:
    tasks = list(dict.fromkeys(t for row in summary.values() for t, v in row.items() if isinstance(v, dict)))
    header = ["run", "seeds", "epoch", *[f"{t} hard / soft (soft share, alpha)" for t in tasks], "feature KD"]
    rows = []
    for name, row in summary.items():
        cells = []
        for task in tasks:
            s = row.get(task)
            cells.append("-" if s is None else f"{s['hard'][0]:.3f} / {s['soft'][0]:.3f} "
                                               f"({s['soft_share'][0]:.0%}, {s['alpha']:g})")
        feature = row["feature_kd"]
        rows.append([name, len(row["seeds"]), ",".join(map(str, row["epoch"])), *cells,
                     "-" if feature is None else f"{feature[0]:.3f}"])
    return markdown_table(header, rows)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    work = Path(args.work_dir)
    if not work.is_dir():
        parser.error(f"--work-dir {work}: no such folder (benchmarks/quality.py --work-dir writes the runs)")
    try:
        summary = summarize(collect(work, args.runs, args.epoch))
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    if not summary:
        parser.error(f"--work-dir {work}: no distilled run (a Distiller config.py with metrics.jsonl) in it")
    print("training losses per task, mean over seeds: hard / soft (alpha * soft's share of the task loss, alpha)\n")
    print(format_table(summary))
    print(f"\nwrote {write_results(args.out, 'loss_scales', {'work_dir': str(work), 'runs': summary}, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
