"""What every benchmark shares: the machine description, running the tools, JSON output, mean/std, tables."""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"


def primary_metrics(results: Iterable[Mapping]) -> dict[str, str]:
    """``{task: primary metric key}`` from the ``"primary"`` dicts that ``tools/test.py --out`` writes.

    ``results`` are metric records in order of precedence (the teacher's first): the first record's
    tasks in its order, then any task only a later record has. A record without ``"primary"`` (written
    before test.py recorded it) is skipped; none at all is an error, since the keys cannot be guessed.
    """
    primary: dict[str, str] = {}
    for record in results:
        for task, key in (record.get("primary") or {}).items():
            primary.setdefault(task, key)
    if not primary:
        raise ValueError("no primary metrics in the results: they come from tools/test.py --out (its "
                         "'primary' entry); test the checkpoints again")
    return primary


def quality_keys(results: Iterable[Mapping]) -> list[str]:
    """The metric keys a benchmark compares: each task's primary one (see :func:`primary_metrics`)."""
    return list(primary_metrics(results).values())


def machine_info() -> dict:
    """Where the numbers were measured: CPU model, cores, threads, torch version, GPU (if any)."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def git_commit() -> str | None:
    """The commit the benchmark ran at (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def write_results(path: str | Path, name: str, results: Mapping, argv: Sequence[str]) -> Path:
    """Write ``{"benchmark", "command", "commit", "machine", "date", "results"}`` as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": " ".join(["python", f"benchmarks/{name}.py", *argv]),
               "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(),
               "results": results}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def run_tool(args: Sequence[str], log: Path | None = None) -> None:
    """Run ``python tools/<x>.py ...`` from the repo root, like a person would; raise when it fails.

    Output goes to ``log`` (appended) when given, else to this process's stdout.
    """
    cmd = [sys.executable, *[str(a) for a in args]]
    print("$ " + " ".join(str(a) for a in args), flush=True)
    if log is None:
        result = subprocess.run(cmd, cwd=ROOT)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            result = subprocess.run(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        where = f"; see {log}" if log is not None else ""
        raise RuntimeError(f"step failed (exit {result.returncode}): {' '.join(str(a) for a in args)}{where}")


BENCH_DATA = "data/synthetic_bench"  # the quality benchmarks' data: the default set with a 4x larger test split
BENCH_NUM_TEST = 2000  # held-out test images: at 500, top-1 accuracy's binomial noise alone is ~2.2 points


def ensure_bench_data(root: str | Path, num_test: int = BENCH_NUM_TEST) -> Path:
    """Make the synthetic set at ``root`` with ``num_test`` test images unless it is there, of this version.

    Images are drawn from RNGs seeded by (seed, split, index), so its train and val splits are
    byte-identical to the default ``tools/make_synthetic.py`` set and its first 500 test images too. A set
    of another ``mtkd.data.synthetic.SYNTHETIC_VERSION`` (its test json's ``info.version``, 1 when
    absent) is made again.
    """
    root = Path(root)
    from mtkd.data.synthetic import SYNTHETIC_VERSION, synthetic_version

    if synthetic_version(root) != SYNTHETIC_VERSION:
        run_tool(["tools/make_synthetic.py", "--out", root, "--num-test", str(num_test), "--no-progress"])
    return root


def check_data(parser, root: str) -> None:
    """Make the default bench set when missing; any other ``--data`` must hold the val and test annotations.

    A mistyped path is an error, not a freshly generated synthetic set standing in for the user's data.
    """
    if Path(root) == Path(BENCH_DATA):
        ensure_bench_data(root)
        return
    missing = [split for split in ("train", "val", "test") if split_size(root, split) is None]
    if missing:
        parser.error(f"--data {root}: no annotations/instances_{missing[0]}.json there (a set made by "
                     f"tools/make_synthetic.py has train, val and test); leave --data out to use {BENCH_DATA}")


def split_size(data_root: str | Path, split: str) -> int | None:
    """Images in ``annotations/instances_{split}.json`` under ``data_root`` (None when there is no such file)."""
    path = Path(data_root) / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        return None
    return len(json.loads(path.read_text())["images"])


def finished(work_dir: Path) -> bool:
    """Whether a training run completed: best.pth is there and log.txt has the trainer's closing line.

    A run killed mid-training leaves a best.pth of an early epoch; it must not pass for a trained one.
    """
    log = work_dir / "log.txt"
    return (work_dir / "best.pth").is_file() and log.is_file() and " done: best " in log.read_text()


def set_aside_unfinished(work_dir: Path) -> None:
    """Move what a killed run left in ``work_dir`` to ``<work_dir>.unfinished`` (replacing an older one).

    Kept, not deleted, so no checkpoint is lost; moved, so the new run's metrics.jsonl is not appended to it.
    """
    if not work_dir.is_dir() or not any(work_dir.iterdir()):
        return
    aside = work_dir.with_name(work_dir.name + ".unfinished")
    if aside.exists():
        shutil.rmtree(aside)
    work_dir.rename(aside)
    log = work_dir.parent / f"{work_dir.name}.log"  # the tools' output, written next to the run by train_and_test
    if log.is_file():
        log.rename(aside.parent / f"{aside.name}.log")
    print(f"{work_dir} holds an unfinished run; moved to {aside} and training again", flush=True)


def train_and_test(config: str, work_dir: Path, data_root: str, options: Sequence[str] = (), seed: int = 0,
                   force: bool = False) -> dict:
    """Train ``config`` into ``work_dir`` (unless a finished run is there), test best.pth on both held-out splits.

    Returns ``{"val": metrics, "test": metrics, "seconds": training wall time}``; val is the split the
    checkpoint was selected on, test the one reported. The wall time is kept in ``train_seconds.json`` of
    the work dir, so a reused run reports the time it took when it was trained (None if unknown). Cached
    metrics are reused only when they were measured on as many images as ``data_root``'s split holds and
    name each task's primary metric (``tools/test.py --out`` writes it since tasks are open).
    """
    work_dir = Path(work_dir)
    log = work_dir.parent / f"{work_dir.name}.log"
    timing = work_dir / "train_seconds.json"
    trained = force or not finished(work_dir)
    if trained:
        set_aside_unfinished(work_dir)
        start = time.perf_counter()
        cmd = ["tools/train.py", config, "--work-dir", work_dir, "--data-root", data_root, "--seed", str(seed),
               "--no-progress"]
        run_tool(cmd + (["--cfg-options", *options] if options else []), log)
        timing.write_text(json.dumps({"seconds": time.perf_counter() - start}) + "\n")
    seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
    results: dict = {"seconds": seconds}
    for split in ("val", "test"):
        out = work_dir / f"{split}_metrics.json"
        stale = out.is_file() and not fresh_metrics(json.loads(out.read_text()), split_size(data_root, split))
        if trained or stale or not out.is_file():
            run_tool(["tools/test.py", work_dir / "best.pth", "--split", split, "--data-root", data_root,
                      "--out", out, "--no-progress"], log)
        results[split] = json.loads(out.read_text())
    return results


def fresh_metrics(record: Mapping, num_images: int | None) -> bool:
    """Cached metrics are reusable: measured on a split of ``num_images`` and naming the primary metrics."""
    return record.get("num_images") == num_images and bool(record.get("primary"))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed with 2 decimals."""
    def cell(value: object) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
