"""Metrics, one per task, registered in METRICS: mIoU (seg), COCO mAP (det), top-k accuracy (cls),
AbsRel/RMSE/delta1 (depth)."""
from mtkd.evaluation.cls import ClsMetric
from mtkd.evaluation.depth import DepthMetric
from mtkd.evaluation.det import CocoDetMetric
from mtkd.evaluation.seg import SegMetric

__all__ = ["ClsMetric", "CocoDetMetric", "DepthMetric", "SegMetric"]
