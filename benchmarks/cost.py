"""What the student saves: parameters, FLOPs, latency and throughput of teacher vs student.

    python benchmarks/cost.py [--pairs demo full] [--repeats 10] [--device cpu]

For each teacher/student pair (demo: the CPU demo models at their 128 px input; full: configs/teacher.py
vs configs/student_scratch.py at their input size) this measures the network forward in eval mode under
``torch.no_grad()``, without post-processing (NMS), on random weights (speed does not depend on them):
parameters, GFLOPs at batch 1 (torch FlopCounterMode, multiply-add = 2), latency at batch 1 (median of
--repeats after --warmup calls) and throughput at batch 32 (images/s, median), in PyTorch eager and, for the same model
exported to ONNX (tools/export.py's exporter, dynamic batch), in onnxruntime on the CPU with as many threads
as torch uses (the ORT columns say why when onnx/onnxruntime are not installed). Heads without a class count
in their config take it from the config's training data, or, when that is not on disk, from a tiny
synthetic set's categories (tools/model_info.py's rule; the note is kept). Prints a table with the
teacher/student ratios and writes benchmarks/results/cost.json with the machine description.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtkd  # noqa: E402,F401  registers every component
from benchmarks.common import RESULTS_DIR, markdown_table, write_results  # noqa: E402
from mtkd.config import Config  # noqa: E402
from mtkd.deploy import DeployError, export_onnx  # noqa: E402
from mtkd.deploy.onnx import INPUT_NAME, require  # noqa: E402
from mtkd.engine.utils import select_device  # noqa: E402
from mtkd.registry import MODELS  # noqa: E402
from tools.model_info import class_counts, data_class_counts, measure  # noqa: E402

PAIRS = {  # name: (teacher config, student config)
    "demo": ("configs/demo/teacher.py", "configs/demo/student_scratch.py"),
    "full": ("configs/teacher.py", "configs/student_scratch.py"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS), help="which model pairs")
    parser.add_argument("--batch-size", type=int, default=32, help="batch for the throughput measurement")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--full-repeats", type=int, default=3,
                        help="timed calls for the full-size pair (a batch of 32 at 512 px takes a minute on 2 cores)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where to measure")
    parser.add_argument("--out", default=str(RESULTS_DIR / "cost.json"), help="JSON results file")
    return parser


def config_input_size(cfg: Config) -> tuple[int, int]:
    """The config's ``input_size`` (int or (H, W)); every model config here sets one."""
    size = cfg.get("input_size")
    if size is None:
        raise KeyError(f"{cfg.filename}: no input_size key; set input_size = (H, W) in its dataset config")
    return (size, size) if isinstance(size, int) else tuple(size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_forward(model: torch.nn.Module, batch: torch.Tensor, repeats: int, warmup: int) -> list[float]:
    """Seconds per forward call of ``model(batch)``, ``repeats`` times after ``warmup`` calls."""
    for _ in range(warmup):
        model(batch)
    _sync(batch.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(batch)
        _sync(batch.device)
        times.append(time.perf_counter() - start)
    return times


def measure_model(config: str, device: torch.device, batch_size: int, repeats: int, warmup: int) -> dict:
    """Params, GFLOPs, batch-1 latency (ms, median) and batch-``batch_size`` throughput (img/s) of one model."""
    cfg = Config.fromfile(config)
    size = config_input_size(cfg)
    unset = any(head and head.get("num_classes") is None for head in cfg.model.get("heads", {}).values())
    from_data, reason = data_class_counts(cfg) if unset else ({}, None)
    counts = class_counts(cfg.model, {}, from_data)
    notes = [] if reason is None else [f"the training data cannot be read ({reason}); class counts {counts} are "
                                       f"the synthetic set's defaults"]
    with torch.device("meta"):
        static = measure(MODELS.build(cfg.model, num_classes=counts), size)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model, num_classes=counts).to(device).eval()
    one = torch.randn(1, 3, *size, device=device)
    many = torch.randn(batch_size, 3, *size, device=device)
    latency = time_forward(model, one, repeats, warmup)
    batch_times = time_forward(model, many, repeats, min(warmup, 1))
    return {"config": config, "input_size": list(size), "tasks": list(static["shapes"]), "num_classes": counts,
            "notes": notes, "params": static["params"], "gflops": static["gflops"],
            "latency_ms": 1000 * statistics.median(latency), "latency_ms_all": [1000 * t for t in latency],
            "batch_size": batch_size, "throughput": batch_size / statistics.median(batch_times),
            **measure_ort(model.cpu(), size, batch_size, repeats, warmup)}


def measure_ort(model: torch.nn.Module, size: tuple[int, int], batch_size: int, repeats: int, warmup: int) -> dict:
    """onnxruntime (CPU, torch's thread count) batch-1 latency (ms) and batch-``batch_size`` throughput (img/s) of
    ``model`` exported with a dynamic batch; ``None`` values and ``ort_note`` saying why when it cannot run."""
    empty = {"ort_latency_ms": None, "ort_latency_ms_all": [], "ort_throughput": None, "ort_threads": None}
    try:
        ort = require("onnxruntime")
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "model.onnx", size, dynamic_batch=True)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except DeployError as err:
        return {**empty, "ort_note": str(err)}
    def run(array):
        return session.run(None, {INPUT_NAME: array})

    latency = time_calls(run, torch.randn(1, 3, *size).numpy(), repeats, warmup)
    batch_times = time_calls(run, torch.randn(batch_size, 3, *size).numpy(), repeats, min(warmup, 1))
    return {"ort_latency_ms": 1000 * statistics.median(latency), "ort_latency_ms_all": [1000 * t for t in latency],
            "ort_throughput": batch_size / statistics.median(batch_times), "ort_threads": torch.get_num_threads(),
            "ort_note": None}


def time_calls(fn, arg, repeats: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn(arg)`` (a CPU call: nothing to synchronize), ``repeats`` times after ``warmup``."""
    for _ in range(warmup):
        fn(arg)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return times


def ratios(teacher: dict, student: dict) -> dict:
    """Teacher / student for every cost (throughput: student / teacher, so > 1 means the student is faster);
    the onnxruntime ones are None when either model has no onnxruntime measurement."""
    ort = all(r.get("ort_latency_ms") for r in (teacher, student))
    return {"params": teacher["params"] / student["params"], "gflops": teacher["gflops"] / student["gflops"],
            "latency": teacher["latency_ms"] / student["latency_ms"],
            "throughput": student["throughput"] / teacher["throughput"],
            "ort_latency": teacher["ort_latency_ms"] / student["ort_latency_ms"] if ort else None,
            "ort_throughput": student["ort_throughput"] / teacher["ort_throughput"] if ort else None}


def format_table(results: dict, device: str) -> str:
    rows = []
    for pair, entry in results.items():
        for role in ("teacher", "student"):
            r = entry[role]
            missing = "n/a (onnxruntime not installed)" if "not installed" in (r.get("ort_note") or "") else "n/a"
            ort = [missing] * 2 if r.get("ort_latency_ms") is None else [f"{r['ort_latency_ms']:.1f}",
                                                                         f"{r['ort_throughput']:.1f}"]
            rows.append([f"{pair} {role}", f"{r['input_size'][0]}x{r['input_size'][1]}", f"{r['params'] / 1e6:.2f}M",
                         f"{r['gflops']:.2f}", f"{r['latency_ms']:.1f}", f"{r['throughput']:.1f}", *ort])
        q = entry["ratio"]
        ort = ["", ""] if q.get("ort_latency") is None else [f"{q['ort_latency']:.1f}x", f"{q['ort_throughput']:.1f}x"]
        rows.append([f"{pair} teacher/student", "", f"{q['params']:.1f}x", f"{q['gflops']:.1f}x",
                     f"{q['latency']:.1f}x", f"{q['throughput']:.1f}x (student faster)", *ort])
    header = ["model", "input", "params", "GFLOPs", f"latency b=1 ({device}, ms)", "throughput b=32 (img/s)",
              "ORT latency b=1 (cpu, ms)", "ORT throughput b=32 (img/s)"]
    return markdown_table(header, rows)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    device = select_device(args.device)
    results = {}
    for pair in args.pairs:
        repeats = args.full_repeats if pair == "full" else args.repeats
        entry = {}
        for role, config in zip(("teacher", "student"), PAIRS[pair]):
            print(f"measuring {pair} {role} ({config}) on {device} ...", flush=True)
            entry[role] = measure_model(config, device, args.batch_size, repeats, args.warmup)
        entry["ratio"] = ratios(entry["teacher"], entry["student"])
        results[pair] = entry
    print("\n" + format_table(results, str(device)))
    for pair, entry in results.items():
        for role in ("teacher", "student"):
            ort_note = entry[role].get("ort_note")
            for note in entry[role]["notes"] + ([f"onnxruntime: {ort_note}"] if ort_note else []):
                print(f"note ({pair} {role}): {note}")
    print(f"\nwrote {write_results(args.out, 'cost', {'device': str(device), 'pairs': results}, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
