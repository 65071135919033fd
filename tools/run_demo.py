"""The main job end to end on the embedded synthetic data, sized for a CPU (what `make demo` runs).

make data -> train the tiny teacher -> train the tiny student from scratch -> distill the student from the
teacher -> test all three on the test split -> print one table and write it as JSON.
Each step runs the same command a person would type (tools/*.py in a subprocess), and is skipped when its
output already exists unless --force is given.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = (  # (row name, config, needs the teacher checkpoint)
    ("teacher", "configs/demo/teacher.py", False),
    ("student scratch", "configs/demo/student_scratch.py", False),
    ("student KD", "configs/demo/student_kd.py", True),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synthetic", help="where the synthetic data set lives / is made")
    parser.add_argument("--work-dir", default="work_dirs/demo", help="parent of the three runs' work dirs")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="passed to every tools/train.py call, e.g. train_cfg.max_epochs=1")
    parser.add_argument("--force", action="store_true", help="redo steps whose outputs already exist")
    return parser.parse_args(argv)


def run(cmd: list[str]) -> None:
    """Run one tool like a person would; stop the demo with its exit code when it fails."""
    print("\n$ " + " ".join(cmd), flush=True)
    result = subprocess.run([sys.executable, *cmd], cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"demo step failed (exit {result.returncode}): {' '.join(cmd)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    data, work = Path(args.data), Path(args.work_dir)
    if args.force or not synthetic_is_current(data):
        run(["tools/make_synthetic.py", "--out", str(data)])
    rows = {}
    teacher_ckpt = work / "teacher" / "best.pth"
    for name, config, needs_teacher in RUNS:
        run_dir = work / Path(config).stem
        options = list(args.cfg_options)
        if needs_teacher:
            options.append(f"model.teacher_checkpoint={teacher_ckpt}")
        if args.force or not (run_dir / "best.pth").is_file():
            cmd = ["tools/train.py", config, "--work-dir", str(run_dir), "--data-root", str(data), "--no-progress"]
            run(cmd + (["--cfg-options", *options] if options else []))
        out = run_dir / "test_metrics.json"
        run(["tools/test.py", str(run_dir / "best.pth"), "--split", "test", "--data-root", str(data),
             "--out", str(out), "--no-progress"])
        rows[name] = json.loads(out.read_text())
    table = format_table(rows)
    print("\n" + table)
    (work / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nwrote {work / 'results.json'}; total time {time.perf_counter() - start:.0f} s")
    return 0


def synthetic_is_current(root: Path) -> bool:
    """Whether ``root`` holds a synthetic set made by this version of the generator (older ones lack tasks)."""
    sys.path.insert(0, str(ROOT))
    from mtkd.data.synthetic import SYNTHETIC_VERSION, synthetic_version
    version = synthetic_version(root)
    if version is not None and version != SYNTHETIC_VERSION:
        print(f"{root} was made by an older generator (version {version}, now {SYNTHETIC_VERSION}): remaking it")
    return version == SYNTHETIC_VERSION


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table: a row per run, every metric key (``task/name``, in the tests' order) and the parameter
    count as columns."""
    columns = list(dict.fromkeys(k for r in rows.values() for k in r if "/" in k and isinstance(r[k], float)))
    columns.append("params (M)")
    lines = ["| run | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        cells = [f"{values[c]:.2f}" if c in values else "-" for c in columns[:-1]]
        cells.append(f"{values.get('params', float('nan')) / 1e6:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
