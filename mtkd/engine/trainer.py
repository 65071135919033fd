"""The training loop: one function, the same for a plain MultiTaskModel and a Distiller.

``train(cfg)`` builds data, model, optimizer and schedule from the config, then runs epochs of
``forward_loss -> backward -> step``, evaluates every ``train_cfg.val_interval`` epochs, and writes
``last.pth`` / ``best.pth`` atomically. DDP when launched by torchrun; AMP and channels_last on CUDA.
"""
from __future__ import annotations

import itertools
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mtkd import dist
from mtkd.checkpoint import remove_stale_temp_files
from mtkd.config import Config, ConfigError
from mtkd.data.builder import build_loader
from mtkd.engine.evaluate import autocast_context, build_metrics, evaluate, primary_score
from mtkd.engine.logger import MetricsLog, TensorBoard, format_duration, format_metrics, get_logger, setup_logger
from mtkd.engine.optim import build_optimizer, build_scheduler, trainable_parameters
from mtkd.engine.config_keys import check_config_keys
from mtkd.engine.run_checkpoint import LoopState, NonFiniteStateError, restore_run, save_run
from mtkd.engine.signals import SignalStop, TrainingInterrupted, agree_to_stop
from mtkd.engine.utils import resolve_data_roots, select_device, seed_everything
from mtkd.models.task_weighting import TaskWeighting
from mtkd.registry import MODELS
from mtkd.structures import to_device
from mtkd.visualization import build_drawers, denormalize, draw_prediction, find_normalize


class NonFiniteLossError(Exception):
    """A loss term became NaN/inf; ``last.pth`` holds the weights before that step."""


@dataclass
class Run:
    """Everything the loop touches, built once by :func:`train`."""

    cfg: Config
    model: nn.Module            # MultiTaskModel or Distiller (what the optimizer trains)
    step_module: nn.Module      # TrainStep, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    ema: object                 # timm ModelEmaV3 of the inference model, or None
    device: torch.device
    info: dist.DistInfo
    num_classes: dict
    class_names: dict           # {task: [names]} of the training data, saved for predict/export
    work_dir: Path
    state: LoopState
    tb: TensorBoard
    metrics_log: MetricsLog
    epoch_losses: dict | None = None  # mean of each loss term over the epoch's steps, for metrics.jsonl
    epoch_sums: dict = field(default_factory=dict)  # each loss term summed over the epoch's steps so far
    epoch_weights: dict = field(default_factory=dict)  # {"weights/<task>": w} of the last epoch, for metrics.jsonl


class TrainStep(nn.Module):
    """``forward(batch) -> loss dict``: what DDP wraps, so gradients sync whatever the model type."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model.forward_loss(batch)


def train(cfg: Config, resume: str | None = None, progress: bool = True) -> dict:
    """Train ``cfg.model`` on ``cfg.train_dataloader``; returns a summary (best metric, last results).

    Unknown config keys are an error before anything runs; data roots are stored resolved (absolute).
    """
    check_config_keys(cfg)
    resolve_data_roots(cfg)
    run, train_loader, val_loader, metrics = _build_run(cfg)
    if resume:
        run.state = restore_run(resume, run)
        get_logger().info(f"resumed from {resume}: epoch {run.state.epoch}, iter {run.state.iter}, "
                       f"batch {run.state.batch_in_epoch} of the epoch")
    max_epochs = int(cfg.train_cfg.max_epochs)
    val_interval = int(cfg.train_cfg.get("val_interval", 1))
    interval = int((cfg.get("checkpoint") or {}).get("interval") or 0)
    results: dict = {}
    state = run.state
    try:
        with SignalStop() as stopper:
            while state.epoch < max_epochs:
                _run_epoch(run, train_loader, stopper, progress, max_epochs)
                _end_epoch_weighting(run, max_epochs)
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                stop_early = False
                if state.epoch % val_interval == 0 or state.epoch == max_epochs:
                    results = _evaluate_epoch(run, val_loader, metrics, progress)
                    stop_early = _update_best(run, metrics, results)
                save_run(run, "last.pth")
                if interval and state.epoch % interval == 0:
                    save_run(run, f"epoch_{state.epoch}.pth")
                if stop_early:
                    get_logger().info(f"early stopping: no new best for {state.bad_evals} evaluations")
                    break
    finally:
        run.tb.close()
    get_logger().info(f"done: best {state.best} at epoch {state.best_epoch}; checkpoints in {run.work_dir}")
    return dict(best=state.best, best_epoch=state.best_epoch, epochs=state.epoch, iters=state.iter,
                results=results, work_dir=str(run.work_dir))


def _build_run(cfg: Config):
    """Device, process group, seeds, work dir, loaders, model, optimizer, schedule, AMP scaler, EMA."""
    device = select_device(cfg.get("device", "auto"))
    info = dist.init_distributed(device.type)
    device = select_device(cfg.get("device", "auto"), info.local_rank)
    seed = int(cfg.get("seed", 0))
    seed_everything(seed + info.rank, bool(cfg.get("deterministic", False)))
    work_dir = Path(cfg.work_dir)
    if info.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        cfg.dump(work_dir / "config.py")
    logger = setup_logger(work_dir / "log.txt", info.is_main)
    logger.info(f"work dir {work_dir}, device {device}, world size {info.world_size}")
    removed = remove_stale_temp_files(work_dir) if info.is_main else []
    if removed:
        logger.info(f"removed {len(removed)} temp file(s) of an interrupted save: {', '.join(p.name for p in removed)}")
    train_loader = build_loader(cfg, "train", info.distributed, seed)
    val_loader = build_loader(cfg, "val", info.distributed, seed)
    num_classes = dict(train_loader.dataset.num_classes)
    record_head_args(cfg, train_loader.dataset)
    model = MODELS.build(cfg.model, num_classes=num_classes).to(device)
    if device.type == "cuda" and cfg.get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)
    check_tasks_have_data(model, train_loader.dataset, val_loader.dataset)
    metrics = build_metrics(cfg.get("metrics") or {}, [t for t in model.inference_model.tasks
                                                       if t in _tasks_of(val_loader.dataset)], val_loader.dataset)
    optimizer = build_optimizer(cfg.optimizer, trainable_parameters(model))
    total_iters = int(cfg.train_cfg.max_epochs) * len(train_loader)
    scheduler = build_scheduler(cfg.get("param_scheduler"), optimizer, total_iters)
    amp_cfg = dict(cfg.get("amp") or {})
    fp16 = device.type == "cuda" and amp_cfg.get("enabled", False) and amp_cfg.get("dtype") == "float16"
    step_module: nn.Module = TrainStep(model)
    if info.distributed:
        step_module = DistributedDataParallel(
            step_module, device_ids=[info.local_rank] if device.type == "cuda" else None)
    logger.info(f"model {type(model).__name__}: {sum(p.numel() for p in trainable_parameters(model)) / 1e6:.2f}M "
                f"trainable params; classes {num_classes}; {len(train_loader)} iters/epoch")
    run = Run(cfg=cfg, model=model, step_module=step_module, optimizer=optimizer, scheduler=scheduler,
              scaler=torch.amp.GradScaler("cuda", enabled=fp16), ema=_build_ema(cfg.get("ema"), model),
              device=device, info=info, num_classes=num_classes, work_dir=work_dir, state=LoopState(),
              class_names={t: list(n) for t, n in getattr(train_loader.dataset, "class_names", {}).items()},
              tb=TensorBoard(work_dir / "tb" if info.is_main else None),
              metrics_log=MetricsLog(work_dir / "metrics.jsonl"))
    return run, train_loader, val_loader, metrics


def record_head_args(cfg: Config, dataset) -> None:
    """Put what the training data decides about the heads besides their class counts (``dataset.head_args``,
    e.g. ``{task: {"multi_label": True}}``) into ``cfg.model.head_args``: the model is built with it and
    the checkpoint's ``model_config`` keeps it, so that every rebuild (test, predict, a teacher) matches."""
    head_args = dict(getattr(dataset, "head_args", None) or {})
    if head_args:
        cfg.model["head_args"] = head_args


def _tasks_of(dataset) -> tuple[str, ...]:
    return tuple(getattr(dataset, "tasks", ()))


def check_tasks_have_data(model: nn.Module, train_set, val_set) -> None:
    """Every task of the model needs ground truth in the training data, unless a teacher teaches it alone
    (a Distiller's ``distilled_tasks``); a task the val data lacks is not evaluated (logged)."""
    tasks, provided = model.inference_model.tasks, _tasks_of(train_set)
    missing = [t for t in tasks if t not in provided]
    untaught = [t for t in missing if t not in getattr(model, "distilled_tasks", ())]
    if untaught:
        raise ConfigError(f"the model has heads for tasks {untaught} but the training data "
                         f"({getattr(train_set, 'ann_file', type(train_set).__name__)}) provides only "
                         f"{list(provided)}: give those tasks ground truth, distill them from a teacher, or "
                         f"drop their heads (heads.<task>=None in the model config, e.g. --cfg-options "
                         f"model.heads.{untaught[0]}=None, or model.student.heads.{untaught[0]}=None for a Distiller)")
    if missing:
        get_logger().info(f"tasks {missing} have no labels in the training data: learnt from the teacher alone")
    unevaluated = [t for t in tasks if t not in _tasks_of(val_set)]
    if unevaluated:
        get_logger().warning(f"the val data has no labels for tasks {unevaluated}: they are not evaluated")


def _build_ema(ema_cfg, model: nn.Module):
    """timm's ModelEmaV3 over the inference model (a Distiller's student), or None."""
    if not ema_cfg or not ema_cfg.get("enabled", False):
        return None
    from timm.utils import ModelEmaV3
    return ModelEmaV3(model.inference_model, decay=float(ema_cfg.get("decay", 0.9998)))


def _epoch_batches(loader, epoch: int, skip: int, seed: int):
    """The epoch's batches in a fixed order (a function of seed and epoch), minus the first ``skip``."""
    for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None), loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)
    return itertools.islice(iter(loader), skip, None)


def _run_epoch(run: Run, loader, stopper: SignalStop, progress: bool, max_epochs: int) -> None:
    state, total = run.state, len(loader)
    log_interval = int(run.cfg.get("log_interval", 10))
    batches = _epoch_batches(loader, state.epoch, state.batch_in_epoch, int(run.cfg.get("seed", 0)))
    bar = tqdm(batches, total=total, initial=state.batch_in_epoch, desc=f"epoch {state.epoch + 1}/{max_epochs}",
               disable=not (progress and run.info.is_main), dynamic_ncols=True, leave=False)
    if state.batch_in_epoch == 0:  # else resumed mid-epoch: the sums so far came with the checkpoint
        run.epoch_sums = {}
    sums: dict[str, torch.Tensor] = {}
    count, tick = 0, time.perf_counter()
    run.model.train()
    for batch in bar:
        losses = _train_step(run, to_device(batch, run.device, non_blocking=True))
        state.iter += 1
        state.batch_in_epoch += 1
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value.detach().float()
            run.epoch_sums[key] = run.epoch_sums.get(key, 0.0) + value.detach().float()
        count += 1
        if state.iter % log_interval == 0 or state.batch_in_epoch == total:
            speed = count / max(time.perf_counter() - tick, 1e-9)
            means = dist.reduce_mean({k: float(v) / count for k, v in sums.items()}, run.device)
            _log_train(run, means, speed, total, max_epochs)
            bar.set_postfix(loss=f"{means.get('loss', float('nan')):.3f}")
            sums, count, tick = {}, 0, time.perf_counter()
        if agree_to_stop(stopper, run.device):
            path = save_run(run, "last.pth")
            raise TrainingInterrupted(stopper.signum or signal.SIGTERM, path)
    bar.close()
    if state.batch_in_epoch:
        run.epoch_losses = dist.reduce_mean({k: float(v) / state.batch_in_epoch for k, v in run.epoch_sums.items()},
                                            run.device)


def _train_step(run: Run, batch: dict) -> dict[str, torch.Tensor]:
    """One optimizer step; a non-finite loss stops the run before the step, writing nothing (the last
    checkpoints keep the last finite state)."""
    if run.device.type == "cuda" and run.cfg.get("channels_last", True):
        batch["img"] = batch["img"].contiguous(memory_format=torch.channels_last)
    with autocast_context(run.device, run.cfg.get("amp")):
        losses = run.step_module(batch)
    loss = losses["loss"]
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if dist.all_reduce_sum(finite).item() < dist.get_world_size():  # a sync point every step, needed to stop
        bad = [k for k, v in losses.items() if not torch.isfinite(v.detach()).all()] or ["loss (on another rank)"]
        value = float(losses[bad[0]].detach()) if bad[0] in losses else float("nan")
        raise NonFiniteLossError(f"loss term {bad[0]} is {value} at iteration {run.state.iter + 1} (epoch "
                                 f"{run.state.epoch + 1}); stopped without saving. {_kept_checkpoints(run)} "
                                 f"What to try: {'; '.join(nonfinite_hints(run))}.")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    clip = run.cfg.get("grad_clip")
    if clip and clip.get("max_norm"):
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(trainable_parameters(run.model), float(clip["max_norm"]),
                                       norm_type=float(clip.get("norm_type", 2.0)))
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update(run.model.inference_model, step=run.state.iter)
    return losses


def _kept_checkpoints(run: Run) -> str:
    """Which checkpoints still hold the last finite state, said for a person."""
    kept = [name for name in ("last.pth", "best.pth") if (run.work_dir / name).is_file()]
    if not kept:
        return "No checkpoint was written before (the first epoch did not finish)."
    return f"{' and '.join(str(run.work_dir / n) for n in kept)} keep the state of their last save."


def nonfinite_hints(run: Run) -> list[str]:
    """Advice for a NaN/inf loss that fits this run's config (no "enable clipping" when it is on)."""
    cfg, lr = run.cfg, run.optimizer.param_groups[0]["lr"]
    base_lr = (cfg.get("optimizer") or {}).get("lr")
    hints = [f"lower the learning rate (optimizer.lr={base_lr}; the schedule has it at {lr:.3g} at this step)"]
    if base_lr and lr > 1.5 * float(base_lr):
        hints.append(f"the schedule raised the lr {lr / float(base_lr):.3g}x above optimizer.lr: check param_scheduler")
    clip = cfg.get("grad_clip")
    if clip and clip.get("max_norm"):
        hints.append(f"lower grad_clip.max_norm (now {clip['max_norm']})")
    else:
        hints.append("enable gradient clipping: grad_clip=dict(max_norm=10.0)")
    amp = cfg.get("amp") or {}
    if run.device.type == "cuda" and amp.get("enabled") and amp.get("dtype") == "float16":
        hints.append("use amp.dtype='bfloat16' (float16 overflows more easily)")
    hints.append("look at the data (python tools/browse_dataset.py CONFIG)")
    return hints


def _log_train(run: Run, means: dict, its: float, total: int, max_epochs: int) -> None:
    state = run.state
    lr = run.optimizer.param_groups[0]["lr"]
    remaining = (max_epochs - state.epoch) * total - state.batch_in_epoch
    text = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
    mem = ""
    if run.device.type == "cuda":
        mem = f"  mem {torch.cuda.max_memory_allocated(run.device) / 2**30:.2f}G"
    get_logger().info(f"epoch {state.epoch + 1}/{max_epochs} iter {state.batch_in_epoch}/{total}  {text}  "
                   f"lr {lr:.3e}  {its:.2f} it/s  eta {format_duration(remaining / max(its, 1e-9))}{mem}")
    run.tb.scalars(means, state.iter, prefix="train/")
    run.tb.scalars({"lr": lr}, state.iter, prefix="train/")


def _end_epoch_weighting(run: Run, max_epochs: int) -> None:
    """Log the task weighting's weights at the end of the epoch just trained (DWA: the epoch's weights) to
    the log, TensorBoard and the next metrics.jsonl line, then call its ``epoch_end()``."""
    weighting = getattr(run.model, "task_weighting", None)
    if not isinstance(weighting, TaskWeighting):
        return
    weights = weighting.weights()
    run.epoch_weights = {f"weights/{task}": w for task, w in weights.items()}
    weighting.epoch_end()
    get_logger().info(f"epoch {run.state.epoch + 1}/{max_epochs} task weights ({type(weighting).__name__}): "
                      + "  ".join(f"{task} {w:.4f}" for task, w in weights.items()))
    run.tb.scalars(run.epoch_weights, run.state.iter)


def _evaluate_epoch(run: Run, loader, metrics, progress: bool) -> dict:
    """Evaluate the inference model (EMA weights when enabled), log, draw a few images."""
    state = run.state
    model = run.ema.module if run.ema is not None else run.model.inference_model
    dist.sync_buffers(model)
    pipeline = (run.cfg.get("val_dataloader") or {}).get("dataset", {}).get("pipeline")
    mean, std = find_normalize(pipeline)
    drawers = build_drawers(run.cfg.get("drawers"), list(metrics), getattr(loader.dataset, "class_names", None),
                            getattr(loader.dataset, "head_args", None))
    drawn: list = []
    limit = int(run.cfg.get("num_vis_images", 4)) if run.info.is_main and drawers else 0

    def draw(batch, preds):
        for i in range(min(len(batch["img"]), limit - len(drawn))):
            single = {task: pred[i] for task, pred in preds.items()}
            drawn.append(draw_prediction(denormalize(batch["img"][i], mean, std), single, drawers))

    results = evaluate(model, loader, metrics, run.device, run.cfg.get("amp"), progress and run.info.is_main, draw)
    get_logger().info(f"eval epoch {state.epoch}: {format_metrics(results)}")
    run.tb.scalars(results, state.iter, prefix="val/")
    for i, image in enumerate(drawn):
        run.tb.image(f"val/prediction_{i}", image, state.iter)
    if run.info.is_main:
        train_losses = {f"train/{k}": v for k, v in (run.epoch_losses or {}).items()}
        run.metrics_log.write({"epoch": state.epoch, "iter": state.iter, **results, **train_losses,
                               **run.epoch_weights})
    return results


def _update_best(run: Run, metrics, results: dict) -> bool:
    """Save ``best.pth`` on a new best; return True when early stopping's patience ran out."""
    state = run.state
    ckpt_cfg = run.cfg.get("checkpoint") or {}
    score = primary_score(results, metrics, ckpt_cfg.get("best_metric", "auto"))
    if math.isfinite(score) and (state.best is None or score > state.best):
        state.best, state.best_epoch, state.bad_evals = score, state.epoch, 0
        save_run(run, "best.pth")
        get_logger().info(f"new best {score:.3f} at epoch {state.epoch}")
        return False
    state.bad_evals += 1
    patience = ckpt_cfg.get("patience")
    return patience is not None and state.bad_evals >= int(patience)
