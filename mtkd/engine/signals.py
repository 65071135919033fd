"""SIGINT/SIGTERM during training: finish the step, agree across ranks, save ``last.pth``, exit non-zero."""
from __future__ import annotations

import signal
from pathlib import Path

import torch

from mtkd import dist


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived: the step finished, ``last.pth`` was saved; exit with ``exit_code``."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} after finishing the current step; "
                         f"saved {checkpoint}; continue with --resume")


class SignalStop:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (a second SIGINT quits now)."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._old.items():
            signal.signal(signum, handler)


def agree_to_stop(stopper: SignalStop, device: torch.device) -> bool:
    """True on every rank once any rank got a signal, so all ranks stop after the same step."""
    if not dist.is_dist():
        return stopper.signum is not None
    flag = torch.tensor([1.0 if stopper.signum is not None else 0.0], device=device)
    return dist.all_reduce_sum(flag).item() > 0
