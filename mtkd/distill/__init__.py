"""Distillation: per-task soft losses and the multi-task Distiller (importing registers them)."""
from mtkd.distill import losses, multilabel
from mtkd.distill.distiller import Distiller

__all__ = ["Distiller", "losses", "multilabel"]
