"""Task balancing: how a multi-task model's per-task losses ``L_t`` become the one loss it minimises.

A weighting is built from ``task_weighting=dict(type=...)`` (a key of the ``MultiTaskModel`` or the
``Distiller`` config) with the model's ``tasks``, and is called with ``{task: L_t}`` (scalar tensors, for
the tasks that have a loss in this batch) to return the total. It is part of the model: learned weights are
parameters (in the optimizer), everything else it keeps is in ``state_dict()``, so ``--resume`` continues
exactly. The engine calls ``epoch_end()`` after each training epoch and logs ``weights()``.

    FixedWeighting        L = sum_t r_t * L_t                       (r_t = ratio, 1 by default)
    UncertaintyWeighting  L = sum_t exp(-s_t) * L_t + s_t           (s_t = log sigma_t^2, learned)
    DWA                   L = sum_t w_t(e) * L_t                    (w from the loss ratios of 2 past epochs)
"""
from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtkd import dist
from mtkd.registry import MODELS


class TaskWeighting(nn.Module):
    """Base class: ``forward({task: L_t}) -> total``, ``weights() -> {task: float}``, ``epoch_end()``.

    ``task_losses`` holds the tasks with a loss in this batch, in the model's task order; a task left out
    (no labels in the batch) adds nothing, but its learned parameters still join the graph with a zero, so
    DDP sees every parameter used.
    """

    def __init__(self, tasks: Sequence[str]):
        super().__init__()
        tasks = tuple(tasks)
        if not tasks or not all(isinstance(t, str) for t in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"{type(self).__name__}: tasks must be distinct task names, got {tasks!r}")
        self.tasks = tasks
        self.index = {task: i for i, task in enumerate(tasks)}

    def _check(self, task_losses: Mapping[str, Tensor]) -> None:
        unknown = [t for t in task_losses if t not in self.tasks]
        if unknown:
            raise KeyError(f"{type(self).__name__}: losses for unknown task(s) {unknown}; tasks: {list(self.tasks)}")

    def weights(self) -> dict[str, float]:
        """The current effective weight of each task (what multiplies ``L_t``), for logging."""
        raise NotImplementedError

    def epoch_end(self) -> None:
        """Called by the engine after each training epoch (on every rank)."""

    def sync(self) -> None:
        """Make every DDP rank hold the same state without changing what ``epoch_end`` will compute; the
        engine calls it (on every rank) before writing a checkpoint, which holds rank 0's state."""


def _weighted_sum(task_losses: Mapping[str, Tensor], weights: Mapping[str, float | Tensor]) -> Tensor:
    """``sum_t w_t * L_t`` added left to right in the given order (so ``FixedWeighting`` reproduces the
    Distiller's former running sum bit for bit); an empty dict gives 0."""
    total = None
    for task, loss in task_losses.items():
        term = weights[task] * loss
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else total


@MODELS.register_module()
class FixedWeighting(TaskWeighting):
    """``L = sum_t r_t * L_t`` with fixed ratios (1 for a task left out): hand-tuned weights, the default.

    In a ``Distiller`` the ratios come from ``tasks.<t>.ratio`` unless given here.
    """

    def __init__(self, tasks: Sequence[str], ratios: Mapping[str, float] | None = None):
        super().__init__(tasks)
        ratios = dict(ratios or {})
        unknown = sorted(set(ratios) - set(self.tasks))
        if unknown:
            raise ValueError(f"FixedWeighting: ratios for unknown task(s) {unknown}; tasks: {list(self.tasks)}")
        self.ratios = {task: float(ratios.get(task, 1.0)) for task in self.tasks}
        bad = {t: r for t, r in self.ratios.items() if not (math.isfinite(r) and r >= 0)}
        if bad:
            raise ValueError(f"FixedWeighting: ratios must be finite numbers >= 0, got {bad}")

    def forward(self, task_losses: Mapping[str, Tensor]) -> Tensor:
        self._check(task_losses)
        return _weighted_sum(task_losses, self.ratios)

    def weights(self) -> dict[str, float]:
        return dict(self.ratios)


@MODELS.register_module()
class UncertaintyWeighting(TaskWeighting):
    """Homoscedastic uncertainty weighting: ``L = sum_t exp(-s_t) * L_t + s_t``, ``s_t = log sigma_t^2``.

    Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and
    Semantics", CVPR 2018. The log-variances ``s`` (``log_vars``, ``[K]`` in task order, 0 at the start:
    every weight 1) are parameters trained by the optimizer with the model (1-D, so never weight-decayed).
    This is the form most re-implementations use for mixed task types; the paper writes
    ``1/(2 sigma^2) L + log sigma`` for regression and ``1/sigma^2 L + log sigma`` for classification, which
    differ from it by constant factors only. At the optimum ``exp(-s_t) = 1 / L_t``: each task's weight
    tracks the inverse of its loss. ``weights()`` gives ``exp(-s_t)``.
    """

    def __init__(self, tasks: Sequence[str]):
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, task_losses: Mapping[str, Tensor]) -> Tensor:
        self._check(task_losses)
        total = None
        for task, loss in task_losses.items():
            s = self.log_vars[self.index[task]]
            term = torch.exp(-s) * loss + s
            total = term if total is None else total + term
        absent = [self.index[t] for t in self.tasks if t not in task_losses]
        if absent:  # no loss, no pull on s_t (else exp(-s_t) would grow without bound); still in the graph
            zero = self.log_vars[absent].sum() * 0.0
            total = zero if total is None else total + zero
        return total

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, torch.exp(-self.log_vars.detach()).tolist()))


@MODELS.register_module()
class DWA(TaskWeighting):
    """Dynamic Weight Average: weights from how fast each task's loss fell over the last two epochs.

    Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019 (section 3.3):

        w_t(e) = K * exp(r_t(e-1) / T) / sum_i exp(r_i(e-1) / T),    r_t(e-1) = L_t(e-1) / L_t(e-2)

    with K tasks, temperature T (2 in the paper) and ``w_t = 1`` in the first two epochs. ``L_t(e)`` is the
    mean of task t's unweighted loss over the training steps of epoch e that had one, accumulated here by
    ``forward`` in training mode and summed over DDP ranks at ``epoch_end`` (so every rank agrees). A task
    slower to improve (ratio nearer 1 or above) gets more weight. The loss history and the current epoch's
    running sums are in ``state_dict()``, so a resume mid-epoch ends the epoch with the same weights.
    """

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0):
        super().__init__(tasks)
        self.temperature = float(temperature)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"DWA: temperature must be a finite number > 0, got {temperature!r}")
        self.history: list[list[float]] = []     # L_t of the last (up to) two finished epochs, oldest first
        self._sums = torch.zeros(len(self.tasks), dtype=torch.float64)    # this epoch, per task
        self._counts = torch.zeros(len(self.tasks), dtype=torch.float64)  # steps with a loss, per task
        self._weights = self._compute_weights()

    def _apply(self, fn, recurse=True):
        """``.to(device)``/``.cuda()`` move the running sums too (plain tensors, not buffers: DDP would give
        every rank rank 0's at each step), so a copy made after (timm's EMA) is on the same device."""
        super()._apply(fn, recurse)
        self._sums, self._counts = fn(self._sums).double(), fn(self._counts).double()
        return self

    def forward(self, task_losses: Mapping[str, Tensor]) -> Tensor:
        self._check(task_losses)
        if self.training and task_losses:
            self._accumulate(task_losses)
        return _weighted_sum(task_losses, self._weights)

    def _accumulate(self, task_losses: Mapping[str, Tensor]) -> None:
        device = next(iter(task_losses.values())).device
        if self._sums.device != device:
            self._sums, self._counts = self._sums.to(device), self._counts.to(device)
        for task, loss in task_losses.items():  # no .item(): the sums stay on the device until the epoch ends
            self._sums[self.index[task]] += loss.detach().double()
            self._counts[self.index[task]] += 1

    def epoch_end(self) -> None:
        """Close the epoch: its mean losses (over every rank's steps) join the history; new weights."""
        sums, counts = dist.all_reduce(self._sums, "sum").tolist(), dist.all_reduce(self._counts, "sum").tolist()
        previous = self.history[-1] if self.history else [0.0] * len(self.tasks)
        means = [s / c if c > 0 else p for s, c, p in zip(sums, counts, previous)]  # no loss: keep the last
        self.history = [*self.history, means][-2:]
        self._sums, self._counts = torch.zeros_like(self._sums), torch.zeros_like(self._counts)
        self._weights = self._compute_weights()

    def sync(self) -> None:
        """Every rank takes the mean of the ranks' running sums and counts (their sum over ranks, what
        ``epoch_end`` uses, is unchanged)."""
        if dist.is_dist():
            size = dist.get_world_size()
            self._sums = dist.all_reduce(self._sums, "sum") / size
            self._counts = dist.all_reduce(self._counts, "sum") / size

    def _compute_weights(self) -> dict[str, float]:
        if len(self.history) < 2:
            return {task: 1.0 for task in self.tasks}
        ratios = [last / before if before > 0 else 1.0 for before, last in zip(*self.history)]
        top = max(ratios)
        exps = [math.exp((r - top) / self.temperature) for r in ratios]  # minus the max: no overflow
        return {task: len(self.tasks) * e / sum(exps) for task, e in zip(self.tasks, exps)}

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    # The state is one float64 tensor, not a dict: timm's EMA copies the model and averages every state_dict
    # value as a tensor (``is_floating_point``); averaging this copy changes nothing. DDP does not broadcast
    # it (buffers would be overwritten by rank 0's at every step). Layout:
    # [number of past epochs kept, L(e-2) (K), L(e-1) (K), running sums (K), running counts (K)].
    def get_extra_state(self) -> Tensor:
        k = len(self.tasks)
        history = [0.0] * (2 * k - k * len(self.history)) + [v for row in self.history for v in row]
        head = torch.tensor([float(len(self.history)), *history], dtype=torch.float64, device=self._sums.device)
        return torch.cat([head, self._sums, self._counts])   # on the sums' device: no sync (EMA calls it per step)

    def set_extra_state(self, state: Tensor) -> None:
        k = len(self.tasks)
        if not isinstance(state, Tensor) or state.numel() != 1 + 4 * k:
            raise ValueError(f"DWA: saved state of {getattr(state, 'numel', lambda: '?')()} values does not fit "
                             f"{k} tasks {list(self.tasks)} (expected {1 + 4 * k})")
        values = state.detach().to("cpu", torch.float64)
        kept = int(values[0])
        rows = values[1:1 + 2 * k].reshape(2, k).tolist()
        self.history = rows[2 - kept:] if kept else []
        self._sums = values[1 + 2 * k:1 + 3 * k].to(self._sums.device)
        self._counts = values[1 + 3 * k:].to(self._counts.device)
        self._weights = self._compute_weights()


def build_task_weighting(cfg: Mapping | None, tasks: Sequence[str], ratios: Mapping[str, float] | None = None,
                         where: str = "model.task_weighting") -> TaskWeighting:
    """Build ``cfg`` (None: ``FixedWeighting``) for ``tasks``; clear errors for a bad type or argument.

    ``ratios`` (a Distiller's ``tasks.<t>.ratio``) go to a weighting that takes ``ratios``; with a learned
    weighting they must all be 1 (a ratio would only rescale what it learns).
    """
    cfg = dict(type="FixedWeighting") if cfg is None else cfg
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise TypeError(f"{where} must be a dict with a 'type' key, e.g. dict(type='DWA', temperature=2.0); "
                        f"known types: {', '.join(known_weightings())}; got {cfg!r}")
    cfg = dict(cfg)
    cls = _weighting_class(cfg["type"], where)
    accepted = [name for name in inspect.signature(cls).parameters if name != "tasks"]
    for key in cfg:
        if key != "type" and key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = "tasks come from the model; " if key == "tasks" else f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{where}: {cls.__name__} has no argument {key!r} ({hint}its arguments: "
                             f"{', '.join(accepted) or 'none'})")
    changed = {t: r for t, r in (ratios or {}).items() if float(r) != 1.0}
    if "ratios" in accepted:
        if changed and cfg.get("ratios") is not None:
            raise ValueError(f"{where}: ratios are set twice, in {where}.ratios and in tasks.<task>.ratio "
                             f"({changed}); keep one")
        if cfg.get("ratios") is None and ratios:
            cfg["ratios"] = dict(ratios)
    elif changed:
        raise ValueError(f"{where}: tasks.<task>.ratio is FixedWeighting's weight, but {cls.__name__} sets the "
                         f"weights itself; remove the ratios {changed} (or set them to 1)")
    return MODELS.build(cfg, tasks=tuple(tasks))


def _weighting_class(name, where: str) -> type:
    if isinstance(name, type):
        cls = name
    elif isinstance(name, str) and name in MODELS:
        cls = MODELS.get(name)
    else:
        close = difflib.get_close_matches(str(name), known_weightings(), n=1)
        raise KeyError(f"{where}: unknown type {name!r}{f' (closest: {close[0]})' if close else ''}; known task "
                       f"weightings: {', '.join(known_weightings())}")
    if not (isinstance(cls, type) and issubclass(cls, TaskWeighting)):
        raise TypeError(f"{where}: {name!r} is not a task weighting (a registered subclass of "
                        f"mtkd.models.TaskWeighting); known: {', '.join(known_weightings())}")
    return cls


def known_weightings() -> list[str]:
    """The registered task weightings (MODELS entries that subclass TaskWeighting)."""
    return sorted(name for name in MODELS.keys()
                  if isinstance(MODELS.get(name), type) and issubclass(MODELS.get(name), TaskWeighting))
