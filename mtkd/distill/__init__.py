"""Distillation: per-task soft losses and the multi-task Distiller (importing registers them)."""
from mtkd.distill import crosskd, losses, multilabel, regression_losses
from mtkd.distill.distiller import Distiller

__all__ = ["Distiller", "crosskd", "losses", "multilabel", "regression_losses"]
