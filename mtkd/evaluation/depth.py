"""Depth metric: AbsRel, RMSE and delta1 per image at the original resolution, averaged over images."""
from __future__ import annotations

import numpy as np
import torch

from mtkd.dist import all_reduce
from mtkd.registry import METRICS
from mtkd.structures import META_KEY, map_to_original

DEPTH_KEYS = ("AbsRel", "RMSE", "delta1")


def depth_errors(pred: torch.Tensor, gt: torch.Tensor, min_depth: float = 1e-3,
                 max_depth: float | None = None) -> torch.Tensor:
    """``[AbsRel, RMSE, delta1 (fraction), 1]`` of one image (float64 ``[4]``), or zeros without a valid pixel.

    The standard NYUv2 definitions (Eigen et al. 2014; as BTS, AdaBins and monodepth2 evaluate): ``pred`` is
    clamped to ``[min_depth, max_depth]``; pixels with ``gt > 0`` (and ``gt <= max_depth`` when set) count.
    Args: pred, gt: depth in metres ``[H, W]`` (same size).
    """
    pred, gt = pred.double().clamp(min=min_depth, max=max_depth), gt.double()
    valid = gt > 0 if max_depth is None else (gt > 0) & (gt <= max_depth)
    count = valid.sum()
    p, g = pred[valid], gt[valid]
    n = count.clamp(min=1).double()
    abs_rel = ((p - g).abs() / g).sum() / n
    rmse = (((p - g) ** 2).sum() / n).sqrt()
    delta1 = (torch.maximum(p / g, g / p) < 1.25).double().sum() / n
    return torch.stack([abs_rel, rmse, delta1, (count > 0).double()])


@METRICS.register_module()
class DepthMetric:
    """``depth/AbsRel``, ``depth/RMSE`` (metres) and ``depth/delta1`` (percent), each a mean over images.

    Each prediction (``[H_in, W_in]`` at the network input, from ``DepthHead.predict``) goes back to the
    original image through its ``meta`` (resize, letterbox, crop and flips undone, bilinear) and is compared
    with ``dataset.read_dense(task, image_id)``, the ground truth at the original resolution; images without
    a valid pixel are left out. Under DDP ``compute()`` sums the per-image values and counts of all ranks, so
    the engine must pass only real samples (no DistributedSampler padding) or padded images count twice.
    """

    primary = "depth/delta1"

    def __init__(self, task: str = "depth", dataset=None, min_depth: float = 1e-3, max_depth: float | None = None):
        if not callable(getattr(dataset, "read_dense", None)):
            raise ValueError(f"DepthMetric(task={task!r}) compares at the original resolution and needs a dataset "
                             f"with read_dense(task, image_id) (e.g. CocoMultiTaskDataset); "
                             f"{type(dataset).__name__} has none")
        if not min_depth > 0 or (max_depth is not None and not max_depth > min_depth):
            raise ValueError(f"DepthMetric(task={task!r}): need 0 < min_depth < max_depth, got "
                             f"min_depth={min_depth!r}, max_depth={max_depth!r}")
        self.task, self.dataset = task, dataset
        self.min_depth, self.max_depth = float(min_depth), None if max_depth is None else float(max_depth)
        self.primary = f"{task}/delta1"
        self.reset()

    def reset(self) -> None:
        self.sums: torch.Tensor | None = None   # [4]: per-image AbsRel, RMSE, delta1 summed, images; preds' device
        self._last: tuple[dict[str, float], int] | None = None

    def update(self, preds, batch: dict) -> None:
        """preds: depth in metres ``[B, H_in, W_in]`` (or a list of ``[H_in, W_in]``); ``batch[META_KEY]``
        gives each image's id and input mapping."""
        metas = batch.get(META_KEY)
        if metas is None or len(metas) != len(preds):
            raise ValueError(f"DepthMetric(task={self.task!r}): the batch needs {META_KEY!r} with one dict per "
                             f"prediction ({len(preds)}), got {None if metas is None else len(metas)}")
        for pred, meta in zip(preds, metas):
            errors = depth_errors(self._to_original(pred, meta), self._ground_truth(meta, pred.device),
                                  self.min_depth, self.max_depth)
            self.sums = errors if self.sums is None else self.sums + errors
        self._last = None

    def _to_original(self, pred: torch.Tensor, meta: dict) -> torch.Tensor:
        if pred.dim() != 2:
            raise ValueError(f"DepthMetric(task={self.task!r}): expected one depth map [H, W] per image, got "
                             f"{tuple(pred.shape)}")
        return map_to_original(pred.double()[None], meta, "bilinear")[0]   # float64: exact at identity

    def _ground_truth(self, meta: dict, device: torch.device) -> torch.Tensor:
        gt = np.asarray(self.dataset.read_dense(self.task, meta["image_id"]), np.float32)
        height, width = (int(v) for v in meta["ori_size"])
        if gt.shape != (height, width):
            raise ValueError(f"DepthMetric(task={self.task!r}): ground truth of image id {meta['image_id']} is "
                             f"{gt.shape}, but its meta says ori_size {(height, width)}")
        return torch.from_numpy(gt).to(device)

    def compute(self) -> dict[str, float]:
        """Means over all ranks' images with a valid pixel (0 when there are none); delta1 in percent."""
        local = self.sums if self.sums is not None else torch.zeros(4, dtype=torch.float64)
        total = all_reduce(local, "sum").cpu().tolist()
        images = int(round(total[-1]))
        means = [value / images if images else 0.0 for value in total[:3]]
        means[2] *= 100.0
        results = {f"{self.task}/{key}": value for key, value in zip(DEPTH_KEYS, means)}
        self._last = (results, images)
        return results

    def summary(self) -> str:
        """One line with the three numbers and the image count; uses the last ``compute()``."""
        if self._last is None:
            self.compute()
        results, images = self._last
        t = self.task
        return (f"{t} over {images} images: AbsRel {results[f'{t}/AbsRel']:.4f}, RMSE {results[f'{t}/RMSE']:.4f} m, "
                f"delta1 {results[f'{t}/delta1']:.2f}%")
