"""Models: backbones, necks, task heads, the MultiTaskModel that joins them, task weightings (all in MODELS)."""
from mtkd.models.assigners import FCOSAssigner
from mtkd.models.backbones import SeedConvNet, TimmBackbone
from mtkd.models.heads import ClsHead, DepthHead, DetHead, SegHead
from mtkd.models.multitask import MultiTaskModel, check_distillable
from mtkd.models.necks import FPN, IdentityNeck
from mtkd.models.task_weighting import DWA, FixedWeighting, TaskWeighting, UncertaintyWeighting

__all__ = ["ClsHead", "DWA", "DepthHead", "DetHead", "FCOSAssigner", "FPN", "FixedWeighting", "IdentityNeck",
           "MultiTaskModel", "SeedConvNet", "SegHead", "TaskWeighting", "TimmBackbone", "UncertaintyWeighting",
           "check_distillable"]
