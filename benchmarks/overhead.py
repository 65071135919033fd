"""What distillation costs per step, and whether the data loader keeps up.

    python benchmarks/overhead.py [--config configs/demo/student_kd_plain.py --teacher-config configs/demo/teacher.py]
                                  [--steps 12] [--device cpu|cuda] [--amp]

In one process, on the same in-memory batches, it times (median over --steps rounds, interleaved):
  (a) one distillation step: Distiller.forward_loss -> backward -> AdamW step (teacher forward included);
  (b) the teacher forward alone under torch.no_grad();
  (c) one plain training step of the same student (MultiTaskModel.forward_loss -> backward -> step).
Each step covers every task the config's student has. The overhead ratio a / (b + c) is what the
distillation machinery (soft losses, bookkeeping) adds on top of the two forward/backward passes it cannot
avoid; the target is <= 1.05. It is given twice: from the medians of a, b and c, and as the median (and
quartiles) of the per-round ratios a_i / (b_i + c_i), which pairs the three timings of one round and so
cancels the machine's slow drifts. Then it measures the train loader alone (images/s at the config's
worker count) and the share of a real distillation loop spent waiting for data. Weights are random (a
fresh teacher checkpoint is written to a temp dir): speed does not depend on them. Writes
benchmarks/results/overhead_<device>.json.

Several teachers (``--teacher-configs A B C``, e.g. the one-task specialists configs/demo/teacher_<task>.py):
each task with a soft loss is taught by the first of them with that task's head, feature links by the first.
Then rounds of (a1) the distillation step with the one --teacher-config teacher, (b1) its forward, (c) the
student step, (aN) the step with the N teachers, (bN) the sum of their N no-grad forwards are interleaved on
the same batches, and both ratios a / (b + c) are given. Peak memory of the student alone, 1 teacher and N
teachers: each runs --memory-steps training steps in a fresh process (spawned), which reports its peak
resident set size (``ru_maxrss``: the Python/torch runtime, the models, the batches, the optimizer state and
the activations) and, on CUDA, ``torch.cuda.max_memory_allocated``. Writes
benchmarks/results/overhead_teachers_<device>.json; the loader is not measured in this mode.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtkd  # noqa: E402,F401  registers every component
from benchmarks.common import RESULTS_DIR, markdown_table, write_results  # noqa: E402
from mtkd.config import Config, DictAction  # noqa: E402
from mtkd.checkpoint import save_checkpoint  # noqa: E402
from mtkd.engine.evaluate import autocast_context  # noqa: E402
from mtkd.data.builder import build_loader  # noqa: E402
from mtkd.engine.utils import select_device, set_data_root  # noqa: E402
from mtkd.registry import MODELS  # noqa: E402
from mtkd.structures import to_device  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/student_kd_plain.py",
                        help="a Distiller config (default: the plain output-KD recipe, the cost of the teacher "
                             "itself; configs/demo/student_kd.py adds the default recipe's feature-KD adapters and terms)")
    parser.add_argument("--teacher-config", default="configs/demo/teacher.py",
                        help="the config the teacher is trained with (its model is built with random weights)")
    parser.add_argument("--teacher-configs", nargs="+", metavar="CONFIG",
                        help="several teachers instead of one (each task taught by the first with its head): "
                             "times 1 teacher (--teacher-config) against these N, and their peak memory")
    parser.add_argument("--memory-steps", type=int, default=3, help="training steps of each peak-memory process")
    parser.add_argument("--data", default="data/synthetic", help="data root for the config's train split")
    parser.add_argument("--steps", type=int, default=40, help="timed rounds of (a), (b), (c)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--loader-batches", type=int, default=30, help="batches for the loader measurements")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where to measure")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only, as amp.enabled in a config)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={}, metavar="KEY=VALUE",
                        help="override the config, e.g. train_dataloader.batch_size=16")
    parser.add_argument("--out", help="JSON results file (default benchmarks/results/overhead_<device>.json)")
    return parser


def write_random_teacher(teacher_config: str, num_classes: dict, head_args: dict, folder: Path,
                         name: str = "teacher") -> Path:
    """A checkpoint of the teacher model with fresh random weights, in the format tools/train.py writes
    (``head_args``: what the data decides about the heads, e.g. multi-label classes, kept in its model config)."""
    model_cfg = Config.fromfile(teacher_config).model.to_dict()
    if head_args:
        model_cfg["head_args"] = head_args
    torch.manual_seed(0)
    teacher = MODELS.build(model_cfg, num_classes=num_classes)
    return save_checkpoint({"state_dict": teacher.state_dict(), "model_config": model_cfg,
                            "num_classes": num_classes, "config": {}}, folder / f"{name}.pth")


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def train_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, amp: dict) -> None:
    """forward_loss -> backward -> step, as the engine does (without its logging)."""
    with autocast_context(batch["img"].device, amp):
        loss = module.forward_loss(batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure_steps(distiller, student, batches: list, device, args) -> dict:
    """Median seconds of (a) distillation step, (b) teacher forward, (c) student step, interleaved."""
    amp = {"enabled": args.amp, "dtype": "bfloat16"}
    opt_kd = torch.optim.AdamW([p for p in distiller.parameters() if p.requires_grad], lr=1e-4)
    opt_student = torch.optim.AdamW(student.parameters(), lr=1e-4)
    distiller.train()
    student.train()

    def teacher_forward(batch):
        with torch.no_grad(), autocast_context(device, amp):
            for teacher in distiller.teachers.values():
                teacher(batch["img"])

    times: dict[str, list[float]] = {"distill_step": [], "teacher_forward": [], "student_step": []}
    for i in range(args.warmup + args.steps):
        batch = batches[i % len(batches)]
        step = {"distill_step": timed(lambda: train_step(distiller, opt_kd, batch, amp), device),
                "teacher_forward": timed(lambda: teacher_forward(batch), device),
                "student_step": timed(lambda: train_step(student, opt_student, batch, amp), device)}
        if i >= args.warmup:
            for key, value in step.items():
                times[key].append(value)
    return {key: statistics.median(values) for key, values in times.items()} | {"all": times}


def paired_ratios(times: dict[str, list[float]]) -> dict:
    """Median and quartiles of the per-round ratios ``a_i / (b_i + c_i)``."""
    ratios = [a / (b + c) for a, b, c in zip(times["distill_step"], times["teacher_forward"], times["student_step"])]
    if len(ratios) < 2:
        return {"median": ratios[0], "q25": ratios[0], "q75": ratios[0], "all": ratios}
    q25, median, q75 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {"median": median, "q25": q25, "q75": q75, "all": ratios}


def measure_loader(loader, batches: int) -> float:
    """Images/s of the loader alone, after its first batch (worker start-up excluded)."""
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            count += len(next(it)["img"])
        except StopIteration:
            break
    return count / (time.perf_counter() - start)


def measure_data_wait(distiller, loader, device, batches: int, amp: dict) -> dict:
    """A real loop of distillation steps fed by the loader: the share of time spent waiting for batches."""
    optimizer = torch.optim.AdamW([p for p in distiller.parameters() if p.requires_grad], lr=1e-4)
    it = iter(loader)
    train_step(distiller, optimizer, to_device(next(it), device), amp)  # warm up workers and model
    wait = 0.0
    count = 0
    start = time.perf_counter()
    for _ in range(batches):
        tick = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        wait += time.perf_counter() - tick
        train_step(distiller, optimizer, to_device(batch, device), amp)
        count += len(batch["img"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    return {"images_per_s": count / total, "wait_fraction": wait / total}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.steps, args.loader_batches, args.memory_steps) < 1 or args.warmup < 0:
        parser.error(f"--steps, --loader-batches and --memory-steps must be >= 1 and --warmup >= 0, got "
                     f"{args.steps}, {args.loader_batches}, {args.memory_steps}, {args.warmup}")
    if args.teacher_configs:
        return main_teachers(parser, args, argv)
    device = select_device(args.device)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if cfg.model.get("type") != "Distiller":
        parser.error(f"--config {args.config}: model.type is {cfg.model.get('type')!r}; expected a Distiller "
                     f"config (e.g. configs/demo/student_kd.py)")
    set_data_root(cfg, args.data)
    loader = build_loader(cfg, "train", False, 0)
    num_classes, head_args = dict(loader.dataset.num_classes), dict(getattr(loader.dataset, "head_args", {}))
    batch_size = int(cfg.train_dataloader.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        teacher_ckpt = write_random_teacher(args.teacher_config, num_classes, head_args, Path(tmp))
        model_cfg = cfg.model.to_dict()
        model_cfg.update(teacher_checkpoint=str(teacher_ckpt), teacher=None)
        distiller = MODELS.build(model_cfg, num_classes=num_classes, head_args=head_args).to(device)
    student = MODELS.build(model_cfg["student"], num_classes=num_classes, head_args=head_args).to(device)
    batches = []
    for batch in loader:
        batches.append(to_device(batch, device))
        if len(batches) == 4:
            break
    print(f"timing {args.steps} rounds at batch {batch_size} on {device} ...", flush=True)
    steps = measure_steps(distiller, student, batches, device, args)
    ratio = steps["distill_step"] / (steps["teacher_forward"] + steps["student_step"])
    paired = paired_ratios(steps["all"])
    print("measuring the loader ...", flush=True)
    loader_speed = measure_loader(loader, args.loader_batches)
    loop = measure_data_wait(distiller, loader, device, args.loader_batches, {"enabled": args.amp})
    results = {"config": args.config, "teacher_config": args.teacher_config, "device": str(device),
               "tasks": list(student.tasks), "amp": args.amp, "batch_size": batch_size,
               "num_workers": int(cfg.train_dataloader.num_workers),
               "seconds": {k: v for k, v in steps.items() if k != "all"}, "seconds_all": steps["all"],
               "overhead_ratio": ratio, "overhead_ratio_paired": paired,
               "train_images_per_s": batch_size / steps["distill_step"],
               "loader_images_per_s": loader_speed, "loop": loop}
    rows = [["(a) distillation step", f"{1000 * steps['distill_step']:.1f}"],
            ["(b) teacher forward, no_grad", f"{1000 * steps['teacher_forward']:.1f}"],
            ["(c) student train step", f"{1000 * steps['student_step']:.1f}"],
            ["a / (b + c), from the medians", f"{ratio:.3f}"],
            ["a_i / (b_i + c_i), median [quartiles] of rounds",
             f"{paired['median']:.3f} [{paired['q25']:.3f}, {paired['q75']:.3f}]"]]
    print("\n" + markdown_table(["measurement", f"ms per batch of {batch_size} ({device})"], rows))
    rows = [["distillation training (a)", f"{results['train_images_per_s']:.1f}"],
            [f"train loader alone ({results['num_workers']} workers)", f"{loader_speed:.1f}"],
            ["real loop (loader + distillation step)", f"{loop['images_per_s']:.1f}"],
            ["share of the loop waiting for data", f"{loop['wait_fraction']:.1%}"]]
    print("\n" + markdown_table(["throughput", "images/s"], rows))
    out = args.out or RESULTS_DIR / f"overhead_{device.type}.json"
    print(f"\nwrote {write_results(out, 'overhead', results, argv)}")
    return 0



# -- several teachers: 1 vs N, time and peak memory ------------------------------------------------------------
def multi_teacher_model(model_cfg: dict, paths: dict[str, Path], heads: dict[str, list[str]]) -> dict:
    """The Distiller config with ``teachers`` instead of one: each task with a soft loss named to the first
    teacher with its head, each feature link to the first teacher; a task none has is an error."""
    cfg = dict(model_cfg, teacher_checkpoint=None, teacher=None,
               teachers={name: dict(checkpoint=str(path), config=None) for name, path in paths.items()})
    tasks = {}
    for task, task_cfg in (cfg.get("tasks") or {}).items():
        if task_cfg is not None and task_cfg.get("loss") is not None:
            owner = next((name for name, tasks_of in heads.items() if task in tasks_of), None)
            if owner is None:
                raise SystemExit(f"--teacher-configs: none of {list(heads)} has a {task} head")
            task_cfg = dict(task_cfg, teacher=owner)
        tasks[task] = task_cfg
    cfg["tasks"] = tasks
    cfg["feature_kd"] = [dict(link, teacher=next(iter(paths))) for link in cfg.get("feature_kd") or []]
    return cfg


def teacher_names(configs: list[str]) -> list[str]:
    """A name per teacher config: its file stem (``teacher_seg``), numbered when two stems are equal."""
    stems = [Path(c).stem.replace(".", "_") for c in configs]
    return [s if stems.count(s) == 1 else f"{s}_{i}" for i, s in enumerate(stems)]


def measure_rounds(models: dict, batches: list, device, args) -> dict:
    """Interleaved rounds on the same batches: for each Distiller ``label``, its step (``a_<label>``) and its
    teachers' no-grad forwards (``b_<label>``), plus the plain student's step ``c``; seconds per round."""
    amp = {"enabled": args.amp, "dtype": "bfloat16"}
    opts = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4) for k, m in models.items()}
    for model in models.values():
        model.train()

    def teacher_forwards(distiller, batch):
        with torch.no_grad(), autocast_context(device, amp):
            for teacher in distiller.teachers.values():
                teacher(batch["img"])

    times: dict[str, list[float]] = {}
    for i in range(args.warmup + args.steps):
        batch, step = batches[i % len(batches)], {}
        for label, model in models.items():
            step[label if label == "c" else f"a_{label}"] = timed(lambda: train_step(model, opts[label], batch, amp),
                                                                  device)
            if label != "c":
                step[f"b_{label}"] = timed(lambda: teacher_forwards(model, batch), device)
        if i >= args.warmup:
            for key, value in step.items():
                times.setdefault(key, []).append(value)
    return times


def ratio_summary(times: dict[str, list[float]], label: str) -> dict:
    """One Distiller's timings and its ratio a / (b + c), from the medians and per round."""
    rounds = {"distill_step": times[f"a_{label}"], "teacher_forward": times[f"b_{label}"], "student_step": times["c"]}
    seconds = {k: statistics.median(v) for k, v in rounds.items()}
    return {"seconds": seconds, "seconds_all": rounds, "overhead_ratio": seconds["distill_step"] / (
        seconds["teacher_forward"] + seconds["student_step"]), "overhead_ratio_paired": paired_ratios(rounds)}


def peak_memory_probe(model_cfg: dict, num_classes: dict, head_args: dict, batches: list, device: str,
                      steps: int, amp: bool) -> dict:
    """Run in a fresh process: build the model, train ``steps`` steps; its peak RSS (and CUDA peak) in MiB."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg, num_classes=num_classes, **({"head_args": head_args} if head_args else {}))
    model = model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps):
        train_step(model, optimizer, to_device(batches[i % len(batches)], device), {"enabled": amp})
    result = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,   # Linux: KiB
              "params": sum(p.numel() for p in model.parameters())}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def fresh_process_memory(model_cfg: dict, num_classes: dict, head_args: dict, batches: list, device,
                         args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(peak_memory_probe, (model_cfg, num_classes, head_args, batches, str(device),
                                              args.memory_steps, args.amp))


def main_teachers(parser: argparse.ArgumentParser, args, argv: list[str]) -> int:
    """1 teacher (--teacher-config) vs N (--teacher-configs): interleaved step timings and peak memory."""
    device = select_device(args.device)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if cfg.model.get("type") != "Distiller":
        parser.error(f"--config {args.config}: model.type is {cfg.model.get('type')!r}; expected a Distiller config")
    set_data_root(cfg, args.data)
    loader = build_loader(cfg, "train", False, 0)
    num_classes, head_args = dict(loader.dataset.num_classes), dict(getattr(loader.dataset, "head_args", {}))
    names = teacher_names(args.teacher_configs)
    heads = {n: [t for t, h in Config.fromfile(c).model.to_dict().get("heads", {}).items() if h is not None]
             for n, c in zip(names, args.teacher_configs)}
    batches = [b for _, b in zip(range(4), loader)]
    with tempfile.TemporaryDirectory() as tmp:
        one = dict(cfg.model.to_dict(), teacher=None,
                   teacher_checkpoint=str(write_random_teacher(args.teacher_config, num_classes, head_args, Path(tmp))))
        paths = {n: write_random_teacher(c, num_classes, head_args, Path(tmp), n)
                 for n, c in zip(names, args.teacher_configs)}
        many = multi_teacher_model(cfg.model.to_dict(), paths, heads)
        configs = {"student_only": one["student"], "one_teacher": one, "n_teachers": many}
        print(f"peak memory: {args.memory_steps} steps in a fresh process each ...", flush=True)
        memory = {k: fresh_process_memory(c, num_classes, head_args, batches, device, args) for k, c in configs.items()}
        models = {"c": MODELS.build(one["student"], num_classes=num_classes, head_args=head_args),
                  "one": MODELS.build(one, num_classes=num_classes, head_args=head_args),
                  "n": MODELS.build(many, num_classes=num_classes, head_args=head_args)}
    models = {k: m.to(device) for k, m in models.items()}
    print(f"timing {args.steps} rounds at batch {cfg.train_dataloader.batch_size} on {device} ...", flush=True)
    times = measure_rounds(models, [to_device(b, device) for b in batches], device, args)
    results = {"config": args.config, "device": str(device), "tasks": list(models["c"].tasks), "amp": args.amp,
               "batch_size": int(cfg.train_dataloader.batch_size), "teacher_config": args.teacher_config,
               "teacher_configs": dict(zip(names, args.teacher_configs)),
               "taught_by": {t: c["teacher"] for t, c in many["tasks"].items() if c and "teacher" in c},
               "one_teacher": ratio_summary(times, "one"), "n_teachers": ratio_summary(times, "n"),
               "memory": memory, "memory_measured": "peak RSS (ru_maxrss) of a fresh spawned process that builds "
               "the model and trains --memory-steps steps: runtime + models + batches + optimizer + activations"
               + ("; cuda_peak_allocated_mib: torch.cuda.max_memory_allocated over those steps"
                  if device.type == "cuda" else "")}
    print("\n" + teachers_table(results))
    out = args.out or RESULTS_DIR / f"overhead_teachers_{device.type}.json"
    print(f"\nwrote {write_results(out, 'overhead', results, argv)}")
    return 0


def teachers_table(results: dict) -> str:
    one, many, mem = results["one_teacher"], results["n_teachers"], results["memory"]
    n = len(results["teacher_configs"])
    ms = lambda r, k: f"{1000 * r['seconds'][k]:.1f}"  # noqa: E731
    paired = lambda r: "{median:.3f} [{q25:.3f}, {q75:.3f}]".format(**r["overhead_ratio_paired"])  # noqa: E731
    rows = [["(a) distillation step, ms", ms(one, "distill_step"), ms(many, "distill_step")],
            ["(b) teacher forwards, no_grad (sum), ms", ms(one, "teacher_forward"), ms(many, "teacher_forward")],
            ["(c) student train step, ms", ms(one, "student_step"), ms(many, "student_step")],
            ["a / (b + c), from the medians", f"{one['overhead_ratio']:.3f}", f"{many['overhead_ratio']:.3f}"],
            ["a_i / (b_i + c_i), median [quartiles]", paired(one), paired(many)],
            ["parameters (student + teachers)", f"{mem['one_teacher']['params']:,}",
             f"{mem['n_teachers']['params']:,}"],
            ["peak RSS, MiB (student alone: {:.0f})".format(mem["student_only"]["peak_rss_mib"]),
             f"{mem['one_teacher']['peak_rss_mib']:.0f}", f"{mem['n_teachers']['peak_rss_mib']:.0f}"]]
    if "cuda_peak_allocated_mib" in mem["student_only"]:
        rows.append(["CUDA peak allocated, MiB (student alone: {:.0f})".format(
            mem["student_only"]["cuda_peak_allocated_mib"]), f"{mem['one_teacher']['cuda_peak_allocated_mib']:.0f}",
            f"{mem['n_teachers']['cuda_peak_allocated_mib']:.0f}"])
    header = ["measurement", f"1 teacher ({Path(results['teacher_config']).name})", f"{n} teachers "
              f"({', '.join(results['teacher_configs'])})"]
    return (f"batch {results['batch_size']} on {results['device']}\n" + markdown_table(header, rows))


if __name__ == "__main__":
    sys.exit(main())
