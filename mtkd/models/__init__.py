"""Models: backbones, necks, task heads and the MultiTaskModel that joins them (all in MODELS)."""
from mtkd.models.assigners import FCOSAssigner
from mtkd.models.backbones import SeedConvNet, TimmBackbone
from mtkd.models.heads import ClsHead, DepthHead, DetHead, SegHead
from mtkd.models.multitask import MultiTaskModel, check_distillable
from mtkd.models.necks import FPN, IdentityNeck

__all__ = ["ClsHead", "DepthHead", "DetHead", "FCOSAssigner", "FPN", "IdentityNeck", "MultiTaskModel", "SeedConvNet",
           "SegHead", "TimmBackbone", "check_distillable"]
