"""Evaluation: run the inference model over a loader, feed each task's metric, gather results."""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn
from tqdm import tqdm

from mtkd.registry import METRICS
from mtkd.structures import to_device


def build_metrics(metric_cfgs: Mapping[str, Mapping], tasks, dataset) -> dict:
    """One metric per task of the model, from ``cfg.metrics``; a task without a metric is an error."""
    metrics = {}
    for task in tasks:
        if task not in metric_cfgs:
            raise KeyError(f"config 'metrics' has no entry for task {task!r} (has {sorted(metric_cfgs)}); "
                           f"add e.g. metrics.{task}=dict(type=...)")
        metrics[task] = METRICS.build(metric_cfgs[task], task=task, dataset=dataset)
    return metrics


def primary_score(results: Mapping[str, float], metrics: Mapping, key: str = "auto") -> float:
    """The number that picks ``best.pth``: a metric key, or ``"auto"`` = mean of the primary metrics."""
    if key != "auto":
        if key not in results:
            raise KeyError(f"checkpoint.best_metric={key!r} is not among the metrics {sorted(results)}")
        return float(results[key])
    values = [float(results[m.primary]) for m in metrics.values() if m.primary in results]
    return sum(values) / len(values) if values else float("nan")


def autocast_context(device: torch.device, amp_cfg: Mapping | None):
    """bf16/fp16 autocast on CUDA when ``amp.enabled``; a no-op context on CPU."""
    if device.type != "cuda" or not (amp_cfg or {}).get("enabled", False):
        return contextlib.nullcontext()
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[amp_cfg.get("dtype", "bfloat16")]
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def evaluate(model: nn.Module, loader, metrics: Mapping, device: torch.device, amp_cfg: Mapping | None = None,
             progress: bool = False, on_batch=None) -> dict[str, float]:
    """Predict every batch of ``loader`` with ``model`` (a MultiTaskModel) and return all metrics.

    ``on_batch(batch, preds)`` is called for each batch (used to draw a few images). Metrics gather
    across ranks inside ``compute()``, so every rank gets the same global numbers.
    """
    was_training = model.training
    model.eval()
    for metric in metrics.values():
        metric.reset()
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False, dynamic_ncols=True):
        batch = to_device(batch, device, non_blocking=True)
        with autocast_context(device, amp_cfg):
            outputs = model(batch["img"])
        outputs = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in outputs.items()}
        preds = model.predict(outputs, batch)
        for task, metric in metrics.items():
            if all(key in batch for key in model.heads[task].batch_keys):
                metric.update(preds[task], batch)
        if on_batch is not None:
            on_batch(batch, preds)
    results: dict[str, float] = {}
    for metric in metrics.values():
        results.update(metric.compute())
    model.train(was_training)
    return results
