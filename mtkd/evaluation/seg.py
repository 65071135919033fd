"""Semantic segmentation metric: mIoU and pixel accuracy at the original resolution, from a confusion matrix."""
from __future__ import annotations

import torch

from mtkd.dist import all_reduce
from mtkd.registry import METRICS
from mtkd.structures import IGNORE_INDEX, META_KEY, class_map, map_to_original


def resolve_num_classes(metric: str, task: str, dataset, num_classes: int | None) -> int:
    """``num_classes`` when given, else ``dataset.num_classes[task]``; a clear error when neither exists."""
    if num_classes is None:
        counts = getattr(dataset, "num_classes", None)
        if not counts or task not in counts:
            raise ValueError(f"{metric}(task={task!r}): pass num_classes=..., or a dataset whose num_classes "
                             f"has a {task!r} entry (dataset={type(dataset).__name__}, num_classes={counts!r})")
        num_classes = counts[task]
    if int(num_classes) < 1:
        raise ValueError(f"{metric}(task={task!r}): num_classes must be >= 1, got {num_classes!r}")
    return int(num_classes)


@METRICS.register_module()
class SegMetric:
    """``seg/mIoU`` and ``seg/aAcc`` in percent, from a ``[C, C]`` confusion matrix (rows: label, cols: pred).

    With ``resolution="original"`` (the default, as mmseg and published tables compute it) each prediction
    goes back to the original image through its ``meta`` (resize, letterbox, crop and flips undone; class
    scores ``[C, h, w]`` bilinearly before the argmax, a class map ``[H, W]`` by nearest neighbour) and is
    compared with ``dataset.read_dense(task, image_id)``; ``"input"`` compares at the network input with the
    batch's labels. mIoU is the mean IoU over the classes that appear in the labels or the predictions of
    the whole evaluation (union > 0), the same as mmseg's nanmean; ignore pixels count nowhere. Under DDP
    ``compute()`` sums the confusion matrices of all ranks, so the engine must pass only real samples (no
    DistributedSampler padding) or padded images count twice.
    """

    primary = "seg/mIoU"

    def __init__(self, task: str = "seg", dataset=None, num_classes: int | None = None,
                 ignore_index: int = IGNORE_INDEX, resolution: str = "original"):
        self.task = task
        self.num_classes = resolve_num_classes("SegMetric", task, dataset, num_classes)
        names = (getattr(dataset, "class_names", None) or {}).get(task)
        if names is not None and len(names) != self.num_classes:
            raise ValueError(f"SegMetric(task={task!r}): dataset.class_names[{task!r}] has {len(names)} names "
                             f"but there are {self.num_classes} classes")
        if resolution not in ("original", "input"):
            raise ValueError(f"SegMetric(task={task!r}): resolution must be 'original' or 'input', got {resolution!r}")
        if resolution == "original" and not callable(getattr(dataset, "read_dense", None)):
            raise ValueError(f"SegMetric(task={task!r}) compares at the original resolution and needs a dataset with "
                             f"read_dense(task, image_id) (e.g. CocoMultiTaskDataset), got {type(dataset).__name__}; "
                             f"pass resolution='input' to compare with the batch's labels at the network input")
        self.class_names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        self.ignore_index, self.resolution, self.dataset = ignore_index, resolution, dataset
        self.primary = f"{task}/mIoU"
        self.reset()

    def reset(self) -> None:
        self.confusion: torch.Tensor | None = None   # this rank's [C, C] counts, on the preds' device
        self._global: torch.Tensor | None = None     # all ranks' counts, from the last compute()

    def update(self, preds, batch: dict) -> None:
        """preds: per image class scores float ``[C, h, w]`` (``SegHead.predict``) or a class map long ``[H, W]``
        at the input, as a list or stacked; labels: ``batch[task]`` long ``[B, H, W]`` (``"input"``) or each
        ``batch["meta"][i]``'s image from the dataset (``"original"``)."""
        if len(preds) == 0:
            return
        if self.task not in batch:
            raise KeyError(f"SegMetric: the batch has no {self.task!r} labels (keys: {sorted(batch)})")
        if self.resolution == "input":
            pairs = zip(preds, batch[self.task])
        else:
            metas = batch.get(META_KEY)
            if metas is None or len(metas) != len(preds):
                raise ValueError(f"SegMetric(task={self.task!r}): the batch needs {META_KEY!r} with one dict per "
                                 f"prediction ({len(preds)}), got {None if metas is None else len(metas)}")
            pairs = ((self._to_original(pred, meta), self._ground_truth(meta)) for pred, meta in zip(preds, metas))
        for pred, target in pairs:
            self._add(pred, target)
        self._global = None

    def _to_original(self, pred: torch.Tensor, meta: dict) -> torch.Tensor:
        """Class scores ``[C, h, w]`` (bilinear, then argmax) or a class map ``[H, W]`` (nearest) -> ``[H0, W0]``."""
        if pred.is_floating_point() and pred.dim() == 3:
            return map_to_original(pred.double(), meta, "bilinear").argmax(dim=0)
        if not pred.is_floating_point() and pred.dim() == 2:
            return map_to_original(pred[None], meta, "nearest")[0]
        raise ValueError(f"SegMetric(task={self.task!r}): expected class scores float [C, h, w] or a class map "
                         f"long [H, W] per image, got {pred.dtype} {tuple(pred.shape)}")

    def _ground_truth(self, meta: dict) -> torch.Tensor:
        return torch.from_numpy(self.dataset.read_dense(self.task, meta["image_id"]).astype("int64"))

    def _add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count one image's pixels; scores at another size are resized to the labels before the argmax."""
        target = target.to(pred.device)
        if pred.is_floating_point() and pred.dim() == 3:
            pred = class_map(pred, tuple(target.shape))
        if pred.shape != target.shape:
            raise ValueError(f"SegMetric(task={self.task!r}): prediction {tuple(pred.shape)} and labels "
                             f"{tuple(target.shape)} differ; predict at the batch's input size")
        keep = target != self.ignore_index
        target, pred = target[keep].long(), pred[keep].long()
        self._check_range(target, pred)
        n = self.num_classes
        counts = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def _check_range(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        n = self.num_classes
        if not ((target < 0) | (target >= n) | (pred < 0) | (pred >= n)).any():
            return
        for what, values in (("label", target), ("prediction", pred)):
            bad = values[(values < 0) | (values >= n)]
            if bad.numel():
                raise ValueError(f"SegMetric(task={self.task!r}): {what} value {int(bad[0])} is outside "
                                 f"0..{n - 1} (and is not ignore_index={self.ignore_index})")

    def _gathered(self) -> torch.Tensor:
        """The confusion matrix summed over ranks (collective under DDP), float64 ``[C, C]``."""
        if self._global is None:
            local = self.confusion if self.confusion is not None else torch.zeros(
                self.num_classes, self.num_classes, dtype=torch.long)
            self._global = all_reduce(local, "sum").double()
        return self._global

    def _iou(self) -> torch.Tensor:
        """Per-class IoU in ``[0, 1]``, NaN for classes absent from labels and predictions, ``[C]``."""
        conf = self._gathered()
        inter = conf.diag()
        union = conf.sum(0) + conf.sum(1) - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))

    def compute(self) -> dict[str, float]:
        """Global mIoU and pixel accuracy in percent (0 when no labelled pixel was seen)."""
        conf = self._gathered()
        iou = self._iou()
        valid = ~iou.isnan()
        miou = float(iou[valid].mean()) * 100 if valid.any() else 0.0
        total = conf.sum()
        acc = float(conf.diag().sum() / total) * 100 if total > 0 else 0.0
        return {f"{self.task}/mIoU": miou, f"{self.task}/aAcc": acc}

    def per_class(self) -> dict[str, float]:
        """IoU per class name in percent, NaN for a class absent from labels and predictions."""
        return {name: float(v) * 100 for name, v in zip(self.class_names, self._iou())}

    def summary(self) -> str:
        """A per-class IoU table; uses the last ``compute()`` (collective under DDP when none was made)."""
        lines = [f"{self.task} IoU per class (%):"]
        lines += [f"  {name:<20} {value:6.2f}" for name, value in self.per_class().items()]
        return "\n".join(lines)
