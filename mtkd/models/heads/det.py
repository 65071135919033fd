"""Dense anchor-free detection head (FCOS/YOLOX style) with its assigner, losses and decoding."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, complete_box_iou_loss, generalized_box_iou_loss

from mtkd.dist import all_reduce, get_world_size, is_dist
from mtkd.models.heads.base import check_class_targets, input_hw, resolve_loss_weights
from mtkd.registry import MODELS

MAX_LOG_DISTANCE = math.log(1e4)  # clamp of the log-distance regression before exp (overflow guard)
BOX_LOSSES = {"giou": generalized_box_iou_loss,  # Rezatofighi et al. 2019
              "ciou": complete_box_iou_loss}     # Zheng et al. 2020


@MODELS.register_module()
class DetHead(nn.Module):
    """One head shared over the neck levels whose stride is in ``strides`` (FCOS, Tian et al. 2019).

    Raw output ``[B, N, 5 + C]`` over all points of all levels, level by level, row-major in a level:
    ``[..., :4]`` box regression as log distances ``log(l/s), log(t/s), log(r/s), log(b/s)`` from the point
    to the box sides in units of the level stride ``s``; ``[..., 4]`` objectness logit (YOLOX, Ge et al.
    2021); ``[..., 5:]`` class logits. Training targets come from :class:`FCOSAssigner`; losses are GIoU or
    CIoU (``box_loss``; box, positives), BCE (objectness, all points) and BCE (classes, positives), each
    summed, divided by the number of positives in the batch (under DDP its mean over the ranks, as mmdet's
    ``reduce_mean(num_pos)``; at least 1) and multiplied by its weight
    (``loss_weights`` defaults ``box=2.0, obj=1.0, cls=1.0``). ``predict`` keeps sigmoid(obj) * sigmoid(cls)
    above ``score_thr``, the ``pre_nms_topk`` best, class-wise NMS at ``nms_iou``, ``max_per_img`` per image.
    """

    batch_keys = ("boxes", "labels")

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], num_classes: int,
                 strides: Sequence[int] = (8, 16, 32), channels: int = 128, num_convs: int = 2,
                 assigner: Mapping | None = None, box_loss: str = "giou",
                 loss_weights: Mapping[str, float] | None = None,
                 score_thr: float = 0.05, nms_iou: float = 0.6, pre_nms_topk: int = 1000, max_per_img: int = 100):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"DetHead: num_classes must be >= 1, got {num_classes}")
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"DetHead: box_loss must be one of {sorted(BOX_LOSSES)}, got {box_loss!r}")
        missing = [s for s in strides if s not in list(in_strides)]
        if missing:
            raise ValueError(f"DetHead: strides {missing} are not among the neck's strides {list(in_strides)}; "
                             f"add FPN levels (num_extra_levels) or change DetHead.strides")
        if not strides or list(strides) != sorted(set(strides)):
            raise ValueError(f"DetHead: strides must increase strictly (finest level first: the raw output is "
                             f"ordered level by level), got {list(strides)}")
        self.strides = [int(s) for s in strides]
        self.levels = [list(in_strides).index(s) for s in self.strides]
        widths = {in_channels[i] for i in self.levels}
        if len(widths) != 1:
            raise ValueError(f"DetHead: a shared head needs one channel count on its levels, got {sorted(widths)}")
        self.num_classes = num_classes
        width = widths.pop()
        self.reg_convs = _tower(width, channels, num_convs)
        self.cls_convs = _tower(width, channels, num_convs)
        self.reg_out = nn.Conv2d(channels, 5, 3, padding=1)   # 4 log-distances + objectness
        self.cls_out = nn.Conv2d(channels, num_classes, 3, padding=1)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - 0.01) / 0.01))  # focal-loss prior (RetinaNet)
        nn.init.constant_(self.reg_out.bias[4], -math.log((1 - 0.01) / 0.01))
        self.assigner = MODELS.build(dict(assigner or dict(type="FCOSAssigner")), strides=self.strides)
        self.box_loss = BOX_LOSSES[box_loss]
        self.loss_weights = resolve_loss_weights(loss_weights, {"box": 2.0, "obj": 1.0, "cls": 1.0}, "DetHead")
        self.score_thr, self.nms_iou = score_thr, nms_iou
        self.pre_nms_topk, self.max_per_img = pre_nms_topk, max_per_img

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats`` (the neck's maps) -> raw ``[B, N, 5 + num_classes]``."""
        return self.forward_pred(self.forward_tower(feats))

    # -- the tower / prediction split (heads/base.py; CrossKD feeds a student's towers to a teacher's predictors)
    def forward_tower(self, feats: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """``{"reg": [B, channels, h, w] per level, "cls": likewise}``: the two towers' outputs."""
        maps = [feats[level] for level in self.levels]
        return {"reg": [self.reg_convs(x) for x in maps], "cls": [self.cls_convs(x) for x in maps]}

    def forward_pred(self, tower: dict[str, list[torch.Tensor]]) -> torch.Tensor:
        """The prediction convs on the towers' maps -> raw ``[B, N, 5 + num_classes]``, level by level."""
        outs = []
        for reg_feat, cls_feat in zip(tower["reg"], tower["cls"]):
            out = torch.cat([self.reg_out(reg_feat), self.cls_out(cls_feat)], dim=1)   # [B, 5 + C, h, w]
            outs.append(out.flatten(2).transpose(1, 2))                                # [B, h*w, 5 + C]
        return torch.cat(outs, dim=1)

    def tower_channels(self) -> dict[str, int]:
        return {"reg": self.reg_out.in_channels, "cls": self.cls_out.in_channels}

    # -- geometry -----------------------------------------------------------------------------
    def points(self, img_hw: tuple[int, int], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Centers ``[N, 2]`` (x, y) of all points and their strides ``[N]``, in raw-output order."""
        centers, strides = [], []
        for s in self.strides:
            h, w = math.ceil(img_hw[0] / s), math.ceil(img_hw[1] / s)
            ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
            centers.append(torch.stack([xs, ys], -1).reshape(-1, 2).float() * s + s / 2)
            strides.append(torch.full((h * w,), s, device=device))
        return torch.cat(centers), torch.cat(strides)

    def num_points(self, img_hw: tuple[int, int]) -> int:
        """Rows ``N`` of the raw output for an input ``(H, W)``: ``ceil(H / s) * ceil(W / s)`` per level."""
        return sum(math.ceil(img_hw[0] / s) * math.ceil(img_hw[1] / s) for s in self.strides)

    def decode_boxes(self, reg: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """Log distances ``[..., N, 4]`` -> xyxy boxes ``[..., N, 4]`` in input pixels."""
        dist = reg.float().clamp(max=MAX_LOG_DISTANCE).exp() * strides[:, None]
        return torch.cat([points - dist[..., :2], points + dist[..., 2:]], dim=-1)

    def _check_raw(self, raw: torch.Tensor, img_hw) -> None:
        expected = self.num_points(img_hw)
        if raw.dim() != 3 or raw.shape[1] != expected or raw.shape[2] != 5 + self.num_classes:
            raise ValueError(f"DetHead: raw output {tuple(raw.shape)} does not fit a {img_hw} input "
                             f"(expected [B, {expected}, {5 + self.num_classes}])")

    # -- training -----------------------------------------------------------------------------
    def loss(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """GIoU + objectness BCE + class BCE against ``batch['boxes']``/``batch['labels']``."""
        img_hw = input_hw(batch)
        self._check_raw(raw, img_hw)
        points, strides = self.points(img_hw, raw.device)
        raw = raw.float()
        obj_target = torch.zeros(raw.shape[:2], device=raw.device)
        box_losses, cls_losses, num_pos = [], [], 0
        self._check_targets(batch, raw.shape[0])
        for i, (gt_boxes, gt_labels) in enumerate(zip(batch["boxes"], batch["labels"])):
            assigned = self.assigner.assign(points, strides, gt_boxes.float())
            pos = assigned >= 0
            num_pos += int(pos.sum())  # a CPU-GPU sync point per image, as `pos.any()` below is anyway
            obj_target[i, pos] = 1.0
            if pos.any():
                pred = self.decode_boxes(raw[i, pos, :4], points[pos], strides[pos])
                box_losses.append(self.box_loss(pred, gt_boxes[assigned[pos]].float(), reduction="sum"))
                onehot = F.one_hot(gt_labels[assigned[pos]].long(), self.num_classes).float()
                cls_losses.append(F.binary_cross_entropy_with_logits(raw[i, pos, 5:], onehot, reduction="sum"))
        norm = _positives_normalizer(num_pos, raw.device)
        zero = raw.sum() * 0.0  # keeps the graph when there are no positives
        obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="sum") / norm
        box = (torch.stack(box_losses).sum() if box_losses else zero) / norm
        cls = (torch.stack(cls_losses).sum() if cls_losses else zero) / norm
        w = self.loss_weights
        return {"box": box * w["box"], "obj": obj * w["obj"], "cls": cls * w["cls"]}

    def _check_targets(self, batch: Mapping[str, Any], batch_size: int) -> None:
        """One ``[Ni, 4]`` xyxy box tensor (x2 > x1, y2 > y1) and one ``[Ni]`` label tensor per image."""
        boxes, labels = batch["boxes"], batch["labels"]
        if len(boxes) != batch_size or len(labels) != batch_size:
            raise ValueError(f"DetHead.loss: batch['boxes'] ({len(boxes)} entries) and batch['labels'] "
                             f"({len(labels)}) must hold one entry per image ({batch_size})")
        for i, (gt_boxes, gt_labels) in enumerate(zip(boxes, labels)):
            if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4 or tuple(gt_labels.shape) != tuple(gt_boxes.shape[:1]):
                raise ValueError(f"DetHead.loss: image {i}: boxes must be [N, 4] and labels [N], got "
                                 f"{tuple(gt_boxes.shape)} and {tuple(gt_labels.shape)}")
            flat = (gt_boxes[:, 2] <= gt_boxes[:, 0]) | (gt_boxes[:, 3] <= gt_boxes[:, 1])
            if bool(flat.any()):
                raise ValueError(f"DetHead.loss: image {i}: boxes must be xyxy with x2 > x1 and y2 > y1, got "
                                 f"{gt_boxes[flat][:3].tolist()}")
            check_class_targets(gt_labels, self.num_classes, f"DetHead.loss batch['labels'][{i}]")

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, raw: torch.Tensor, batch: Mapping[str, Any]) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes": [K, 4] xyxy input px, "scores": [K], "labels": [K]}`` after NMS."""
        img_hw = input_hw(batch)
        self._check_raw(raw, img_hw)
        points, strides = self.points(img_hw, raw.device)
        boxes = self.decode_boxes(raw[..., :4], points, strides)
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, img_hw[1])
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, img_hw[0])
        scores = raw[..., 4:5].float().sigmoid() * raw[..., 5:].float().sigmoid()  # [B, N, C]
        return [self._nms(b, s) for b, s in zip(boxes, scores)]

    def _nms(self, boxes: torch.Tensor, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = scores.flatten()
        keep = torch.nonzero(flat > self.score_thr).flatten()
        if keep.numel() > self.pre_nms_topk:
            keep = keep[flat[keep].topk(self.pre_nms_topk).indices]
        point, label = keep // self.num_classes, keep % self.num_classes
        kept = batched_nms(boxes[point], flat[keep], label, self.nms_iou)[: self.max_per_img]
        return {"boxes": boxes[point[kept]], "scores": flat[keep][kept], "labels": label[kept]}

    def output_signature(self) -> dict:
        """What the raw output indexes, for the teacher/student compatibility check."""
        return {"head": "DetHead", "output": "[B, N, 5 + C]", "num_classes": self.num_classes,
                "strides": list(self.strides), "box_encoding": "log(ltrb / stride)"}


def _positives_normalizer(num_pos: int, device: torch.device) -> float | torch.Tensor:
    """``max(num_pos, 1)``; under DDP the mean of ``num_pos`` over the ranks, at least 1 (mmdet's
    ``reduce_mean(num_pos)`` in FCOS/YOLOX heads), so that every rank divides by the same number and a rank
    with few objects does not weigh its positives more than the others do.

    Every rank must call this (it is a collective): ``MultiTaskModel.loss`` calls ``DetHead.loss`` only on
    batches with det labels, so a run whose ranks can draw batches without them would wait here forever.
    """
    if not is_dist():
        return max(num_pos, 1)
    total = all_reduce(torch.tensor(float(num_pos), device=device), "sum")  # stays a tensor: no extra sync
    return (total / get_world_size()).clamp(min=1.0)


def _tower(c_in: int, channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` of conv3x3-GroupNorm-ReLU; GroupNorm because one tower serves every level (FCOS)."""
    layers: list[nn.Module] = []
    for k in range(num_convs):
        layers += [nn.Conv2d(c_in if k == 0 else channels, channels, 3, padding=1, bias=False),
                   nn.GroupNorm(math.gcd(32, channels), channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)
