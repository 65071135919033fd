"""Run records: the text log, metrics.jsonl and TensorBoard, written by rank 0 only."""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

LOGGER_NAME = "mtkd"


def setup_logger(log_file: Path | None, is_main: bool) -> logging.Logger:
    """The ``mtkd`` logger: INFO to stdout and ``log_file`` on rank 0, warnings only elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if log_file is not None and is_main:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


class MetricsLog:
    """Appends one JSON line per evaluation: ``{"epoch", "iter", "seg/mIoU", ..., "train/<loss term>", ...}``.

    The ``train/`` values are each loss term's mean over the epoch's steps (since a resume, mid-epoch),
    so training curves can be drawn from this file alone (``benchmarks/plot_curves.py``).
    """

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as handle:
            handle.write(json.dumps(clean) + "\n")


class TensorBoard:
    """A SummaryWriter that exists on rank 0 only; calls on other ranks do nothing."""

    def __init__(self, log_dir: Path | None):
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}{key}", value, step)

    def image(self, tag: str, img_chw, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, img_chw, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.2f}" for k, v in metrics.items())
