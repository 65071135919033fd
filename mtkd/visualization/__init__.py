"""Drawings: one drawer per task (registered in DRAWERS), and the helpers that put them on images."""
from mtkd.visualization.base import (Drawer, build_drawers, class_colours, denormalize, draw_prediction,
                                     draw_target, draw_text, find_normalize, save_png)
from mtkd.visualization.seg import SegMapDrawer
from mtkd.visualization.det import BoxDrawer  # noqa: I001
from mtkd.visualization.cls import ClassLabelDrawer
from mtkd.visualization.depth import DepthMapDrawer

__all__ = ["BoxDrawer", "ClassLabelDrawer", "DepthMapDrawer", "Drawer", "SegMapDrawer", "build_drawers",
           "class_colours", "denormalize", "draw_prediction", "draw_target", "draw_text", "find_normalize",
           "save_png"]
