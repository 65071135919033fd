"""Optimizer and LR schedule from config: any torch optimizer, warmup then any torch scheduler.

Config keys (see ``configs/_base_/schedules/``):
    optimizer = dict(type="AdamW", lr=1e-3, weight_decay=0.05)
    param_scheduler = dict(warmup=dict(type="LinearLR", start_factor=0.01, total_iters=500),
                           main=dict(type="CosineAnnealingLR", eta_min=1e-5))
Schedulers step once per iteration. ``main`` gets ``T_max``/``total_iters`` = the iterations after warmup
when the config leaves them out; warmup is clipped to the run's length.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from mtkd.registry import OPTIMIZERS, SCHEDULERS


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer owns: those with ``requires_grad`` (a frozen teacher has none)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(cfg: Mapping, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Build ``cfg['type']`` from OPTIMIZERS over ``params``; no-decay groups for norms and biases.

    ``weight_decay`` applies to weights of dimension >= 2 only (the usual timm/mmdet practice): decaying
    BatchNorm scales and biases hurts small models.
    """
    cfg = dict(cfg)
    params = list(params)
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True) to optimize")
    decay = cfg.get("weight_decay", 0.0)
    if decay:
        groups = [{"params": [p for p in params if p.ndim >= 2]},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        params = [g for g in groups if g["params"]]
    return OPTIMIZERS.build(cfg, params=params)


def build_scheduler(cfg: Mapping | None, optimizer: torch.optim.Optimizer, total_iters: int):
    """Warmup + main schedule chained with SequentialLR; None/empty config -> a constant LR."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - {"warmup", "main"}
    if unknown:
        raise KeyError(f"param_scheduler: unknown key(s) {sorted(unknown)}; expected 'warmup' and/or 'main'")
    warmup_cfg, main_cfg = cfg.get("warmup"), cfg.get("main")
    warmup_iters = 0
    schedulers = []
    if warmup_cfg:
        warmup_cfg = dict(warmup_cfg)
        warmup_iters = max(1, min(int(warmup_cfg.get("total_iters", 0)) or 1, max(total_iters - 1, 1)))
        warmup_cfg["total_iters"] = warmup_iters
        schedulers.append(SCHEDULERS.build(warmup_cfg, optimizer=optimizer))
    main_cfg = dict(main_cfg or dict(type="ConstantLR", factor=1.0, total_iters=0))
    remaining = max(total_iters - warmup_iters, 1)
    accepted = inspect.signature(SCHEDULERS.get(main_cfg["type"]) if isinstance(main_cfg["type"], str)
                                 else main_cfg["type"]).parameters
    for key in ("T_max", "total_iters"):
        if key in accepted and key not in main_cfg:
            main_cfg[key] = remaining
    schedulers.append(SCHEDULERS.build(main_cfg, optimizer=optimizer))
    if len(schedulers) == 1:
        return schedulers[0]
    return torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers, milestones=[warmup_iters])
