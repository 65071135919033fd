"""Task heads: each has forward (raw output), loss (hard losses), predict (decoded results)."""
from mtkd.models.heads.cls import ClsHead
from mtkd.models.heads.depth import DepthHead
from mtkd.models.heads.det import DetHead
from mtkd.models.heads.seg import SegHead

__all__ = ["ClsHead", "DepthHead", "DetHead", "SegHead"]
