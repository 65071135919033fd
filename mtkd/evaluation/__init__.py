"""Metrics, one per task, registered in METRICS: mIoU (seg), COCO mAP (det), top-k accuracy (cls)."""
from mtkd.evaluation.cls import ClsMetric
from mtkd.evaluation.det import CocoDetMetric
from mtkd.evaluation.seg import SegMetric

__all__ = ["ClsMetric", "CocoDetMetric", "SegMetric"]
