"""What distillation costs per step, and whether the data loader keeps up.

    python benchmarks/overhead.py [--config configs/demo/student_kd.py --teacher-config configs/demo/teacher.py]
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
from mtkd.config import Config, DictAction  # noqa: E402
from mtkd.checkpoint import save_checkpoint  # noqa: E402
from mtkd.engine.evaluate import autocast_context  # noqa: E402
from mtkd.data.builder import build_loader  # noqa: E402
from mtkd.engine.utils import select_device, set_data_root  # noqa: E402
from mtkd.registry import MODELS  # noqa: E402
from mtkd.structures import to_device  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/student_kd.py", help="a Distiller config")
    parser.add_argument("--teacher-config", default="configs/demo/teacher.py",
                        help="the config the teacher is trained with (its model is built with random weights)")
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


def write_random_teacher(teacher_config: str, num_classes: dict, head_args: dict, folder: Path) -> Path:
    """A checkpoint of the teacher model with fresh random weights, in the format tools/train.py writes
    (``head_args``: what the data decides about the heads, e.g. multi-label classes, kept in its model config)."""
    model_cfg = Config.fromfile(teacher_config).model.to_dict()
    if head_args:
        model_cfg["head_args"] = head_args
    torch.manual_seed(0)
    teacher = MODELS.build(model_cfg, num_classes=num_classes)
    return save_checkpoint({"state_dict": teacher.state_dict(), "model_config": model_cfg,
                            "num_classes": num_classes, "config": {}}, folder / "teacher.pth")


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
            distiller.teacher(batch["img"])

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
    if min(args.steps, args.loader_batches) < 1 or args.warmup < 0:
        parser.error(f"--steps and --loader-batches must be >= 1 and --warmup >= 0, got {args.steps}, "
                     f"{args.loader_batches}, {args.warmup}")
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


if __name__ == "__main__":
    sys.exit(main())
