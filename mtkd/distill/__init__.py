"""Distillation: per-task soft losses and the multi-task Distiller (importing registers them)."""
from mtkd.distill import losses  # noqa: F401
