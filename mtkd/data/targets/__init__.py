"""Target readers, one per task (registered in TARGETS; the import order is the discovery order)."""
from mtkd.data.targets.base import TargetReader
from mtkd.data.targets.seg import SemanticMaskTarget
from mtkd.data.targets.det import BoxTarget  # noqa: I001  (order: seg, det, cls, depth)
from mtkd.data.targets.cls import ImageLabelTarget
from mtkd.data.targets.depth import DepthTarget

__all__ = ["BoxTarget", "DepthTarget", "ImageLabelTarget", "SemanticMaskTarget", "TargetReader"]
