"""Soft (teacher) losses: a functional core plus a thin registered module per loss, as in mmdet.

Every module computes ``forward(student, teacher) -> scalar``; ``teacher`` is treated as a fixed target
(callers pass it detached). Losses that read the ground truth set ``needs_target = True`` and take it as
``forward(student, teacher, target)``; the Distiller passes the batch's labels to those. The Distiller
also shows each loss the student head's ``output_signature()`` (``for_output``), so that a loss can
refuse, or hand over to another loss, an output it does not fit (softmax KD on multi-label logits).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkd.registry import MODELS
from mtkd.structures import IGNORE_INDEX

DET_KD_NORMALIZE = ("mean", "teacher_objectness")  # DetOutputMSELoss(normalize=...)
FEATURE_KD_MODES = ("mse", "cosine", "pearson")     # FeatureKDLoss(mode=...)


# -- checks ------------------------------------------------------------------------------------------
def _check_temperature(name: str, temperature: float) -> float:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"{name}: temperature must be a positive number, got {temperature!r}")
    return float(temperature)


def _check_same_shape(name: str, student: Tensor, teacher: Tensor, dims: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"{name}: student and teacher outputs must both be {dims} of the same shape, got "
                         f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)}")


def _check_maps(name: str, student: Tensor, teacher: Tensor) -> None:
    """Dense maps ``[B, C, H, W]`` with the same B and C; H, W may differ (the teacher is resized)."""
    if student.dim() != 4 or teacher.dim() != 4 or student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"{name}: expected student and teacher maps [B, C, H, W] with the same B and C, got "
                         f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)}")


def _at_least_fp32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is a half type (autocast outputs), else unchanged (float64 stays float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _resize_to(maps: Tensor, size: torch.Size) -> Tensor:
    """Bilinear resize of ``[B, C, H, W]`` to ``size`` (h, w); a no-op when already that size."""
    if maps.shape[-2:] == size:
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


# -- functional core ---------------------------------------------------------------------------------
def logit_kd_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Hinton et al. 2015 KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))`` summed over classes, batch mean.

    Args: student, teacher: logits ``[B, C]``.
    """
    _check_same_shape("LogitKDLoss", student, teacher, "[B, C] logits")
    if student.dim() != 2:
        raise ValueError(f"LogitKDLoss: expected logits [B, C], got shape {tuple(student.shape)}")
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * temperature ** 2


def pixelwise_kl_loss(student: Tensor, teacher: Tensor, temperature: float, target: Tensor | None = None,
                      ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Per-pixel KD: ``T^2 * KL`` summed over classes, averaged over the kept pixels.

    Args: student ``[B, C, h, w]``; teacher ``[B, C, H, W]`` (resized to ``h, w``); target ``[B, H0, W0]``
    labels, resized with nearest to ``h, w``, where ``ignore_index`` pixels are excluded. All pixels
    ignored gives 0 (still part of the graph).
    """
    _check_maps("PixelwiseKLLoss", student, teacher)
    teacher = _resize_to(teacher, student.shape[-2:])
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # [B, h, w]
    if target is None:
        return kl.mean() * temperature ** 2
    if target.dim() != 3 or target.shape[0] != student.shape[0]:
        raise ValueError(f"PixelwiseKLLoss: target must be labels [B, H, W] with B={student.shape[0]}, "
                         f"got shape {tuple(target.shape)}")
    target = F.interpolate(target[:, None].float(), size=kl.shape[-2:], mode="nearest")[:, 0]
    keep = target != ignore_index
    return (kl * keep).sum() / keep.sum().clamp(min=1) * temperature ** 2


def det_output_mse_loss(student: Tensor, teacher: Tensor, box: float = 1.0, obj: float = 1.0, cls: float = 1.0,
                        objectness_weighted: bool = False, probabilities: bool = False,
                        normalize: str = "mean") -> Tensor:
    """MSE between raw detection outputs ``[B, N, 5 + C]``: ``box * MSE(:4) + obj * MSE(4) + cls * MSE(5:)``.

    With ``objectness_weighted`` the box and class errors at each location are multiplied by the
    teacher's ``sigmoid`` objectness there (Mehta & Ozturk 2018, "Object detection at 200 Frames Per
    Second", objectness-scaled distillation), so that the many background locations do not dominate; the
    objectness term itself stays unweighted, as in the paper. Each term is a mean over its elements.
    With ``probabilities`` the objectness and class errors are taken between ``sigmoid`` probabilities,
    as the paper does, instead of raw logits (box regression stays raw): confident negatives, whose logits
    can differ by several units while both mean "no object", then no longer dominate the loss.

    ``normalize`` says what the errors are divided by. ``"mean"``: each term is a mean over its elements,
    so it shrinks with the share of background locations (in the demo, 1/50 to 1/100 of the hard det loss).
    ``"teacher_objectness"``: every term is summed (over locations, coordinates and classes) and divided
    by the teacher's total objectness ``sum(sigmoid(t_obj))``, its soft count of objects in the batch
    (at least 1), as the hard loss divides its sums by the number of positives; the soft loss then has the
    hard loss's scale whatever the image size or the share of background.
    """
    if normalize not in DET_KD_NORMALIZE:
        raise ValueError(f"DetOutputMSELoss: normalize must be one of {DET_KD_NORMALIZE}, got {normalize!r}")
    _check_same_shape("DetOutputMSELoss", student, teacher, "raw det outputs [B, N, 5 + C]")
    if student.dim() != 3 or student.shape[-1] < 6:
        raise ValueError(f"DetOutputMSELoss: expected raw det outputs [B, N, 5 + C] with C >= 1, got shape "
                         f"{tuple(student.shape)}")
    student, teacher = _at_least_fp32(student), _at_least_fp32(teacher)  # sums over B * N: not in bf16 (AMP)
    teacher_objectness = teacher[..., 4:5].sigmoid()  # [B, N, 1]
    if probabilities:
        student = torch.cat([student[..., :4], student[..., 4:].sigmoid()], dim=-1)
        teacher = torch.cat([teacher[..., :4], teacher[..., 4:].sigmoid()], dim=-1)
    sq_err = (student - teacher) ** 2  # [B, N, 5 + C]
    box_err, obj_err, cls_err = sq_err[..., :4], sq_err[..., 4], sq_err[..., 5:]
    if objectness_weighted:
        box_err, cls_err = box_err * teacher_objectness, cls_err * teacher_objectness
    if normalize == "mean":
        return box * box_err.mean() + obj * obj_err.mean() + cls * cls_err.mean()
    total = box * box_err.sum() + obj * obj_err.sum() + cls * cls_err.sum()
    return total / teacher_objectness.sum().clamp(min=1.0)


def feature_kd_loss(student: Tensor, teacher: Tensor, mode: str = "mse") -> Tensor:
    """Distance between adapted student features and teacher features ``[B, C, H, W]`` (teacher resized).

    ``mse``: mean squared error over all elements (FitNets, Romero et al. 2015). ``cosine``: ``1 - cos``
    between the channel vectors at each location, averaged over locations. ``pearson``: both maps
    normalized per channel to zero mean and unit variance over the batch and locations, then half the MSE,
    i.e. ``1 - Pearson correlation`` per channel (PKD, Cao et al. 2022): free of the teacher's feature
    magnitude, so one weight suits every level and teacher.
    """
    _check_maps("FeatureKDLoss", student, teacher)
    teacher = _resize_to(teacher, student.shape[-2:])
    if mode == "mse":
        return F.mse_loss(student, teacher)
    if mode == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()
    if mode == "pearson":
        return F.mse_loss(_standardize_channels(student), _standardize_channels(teacher)) / 2
    raise ValueError(f"FeatureKDLoss: mode must be one of {FEATURE_KD_MODES}, got {mode!r}")


def _standardize_channels(maps: Tensor, eps: float = 1e-6) -> Tensor:
    """``[B, C, H, W]`` with each channel shifted and scaled to mean 0, std 1 over ``(B, H, W)``."""
    mean = maps.mean(dim=(0, 2, 3), keepdim=True)
    std = maps.std(dim=(0, 2, 3), keepdim=True, correction=0)
    return (maps - mean) / (std + eps)


def dkd_loss(student: Tensor, teacher: Tensor, target: Tensor | None, alpha: float = 1.0, beta: float = 8.0,
             temperature: float = 4.0) -> Tensor:
    """Decoupled KD (Zhao et al. 2022): ``T^2 * (alpha * TCKD + beta * NCKD)``, batch mean.

    TCKD is the KL between the binary (target, rest) probabilities, NCKD the KL between the distributions
    over the non-target classes. Args: logits ``[B, C]``, target class ids ``[B]``, or None (a batch
    without labels): then the teacher's top class ``teacher.argmax(1)`` is the target, so that DKD trains on
    partially labelled data (the split then follows the teacher's belief instead of the ground truth).
    """
    _check_same_shape("DKDLoss", student, teacher, "[B, C] logits")
    if student.dim() != 2 or student.shape[1] < 2:
        raise ValueError(f"DKDLoss: expected logits [B, C] with C >= 2, got shape {tuple(student.shape)}")
    if target is None:
        target = teacher.argmax(dim=1)
    if target.shape != student.shape[:1] or target.dtype != torch.long:
        raise ValueError(f"DKDLoss: target must be long class ids [B] with B={student.shape[0]}, got "
                         f"{target.dtype} of shape {tuple(target.shape)}")
    if target.numel() and (target.min() < 0 or target.max() >= student.shape[1]):
        raise ValueError(f"DKDLoss: target class ids must be in [0, {student.shape[1]}), got "
                         f"{target.min().item()}..{target.max().item()}")
    gt_mask = F.one_hot(target, student.shape[1]).bool()
    tckd = _kl_rows(_binary_log_probs(teacher / temperature, gt_mask),
                    _binary_log_probs(student / temperature, gt_mask))
    nckd = _kl_rows(_non_target_log_probs(teacher / temperature, gt_mask),
                    _non_target_log_probs(student / temperature, gt_mask))
    return (alpha * tckd + beta * nckd).mean() * temperature ** 2


def _binary_log_probs(logits: Tensor, gt_mask: Tensor) -> Tensor:
    """``[B, 2]`` log of (p_target, 1 - p_target), computed with logsumexp for stability."""
    log_total = logits.logsumexp(dim=1)
    log_target = logits[gt_mask] - log_total
    log_rest = logits.masked_fill(gt_mask, float("-inf")).logsumexp(dim=1) - log_total
    return torch.stack([log_target, log_rest], dim=1)


def _non_target_log_probs(logits: Tensor, gt_mask: Tensor) -> Tensor:
    """``[B, C]`` log-softmax over the non-target classes; the target entry is ``-inf``."""
    return F.log_softmax(logits.masked_fill(gt_mask, float("-inf")), dim=1)


def _kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``KL(p || q)`` per row of ``[B, K]`` log-probabilities; entries where ``p = 0`` contribute 0."""
    absent = torch.isneginf(log_p)  # 0 * log(0 / q) = 0, without inf - inf on the way
    diff = log_p.masked_fill(absent, 0.0) - log_q.masked_fill(absent, 0.0)
    return (log_p.exp() * diff).sum(dim=1)


def cwd_loss(student: Tensor, teacher: Tensor, temperature: float = 4.0) -> Tensor:
    """Channel-wise distillation (Shu et al. 2021): per channel, KL between spatial softmaxes at ``T``.

    ``T^2 / C * sum_c KL(softmax_HW(t_c/T) || softmax_HW(s_c/T))``, batch mean. Args: maps ``[B, C, H, W]``
    (the teacher is resized to the student's size).
    """
    _check_maps("CWDLoss", student, teacher)
    teacher = _resize_to(teacher, student.shape[-2:])
    log_p_s = F.log_softmax(student.flatten(2) / temperature, dim=2)  # [B, C, HW]
    log_p_t = F.log_softmax(teacher.flatten(2) / temperature, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=2)  # [B, C]
    return kl.mean() * temperature ** 2


# -- registered modules ------------------------------------------------------------------------------
class SoftLoss(nn.Module):
    """Base of the soft losses: holds ``loss_weight``; ``needs_target`` says whether it reads labels."""

    needs_target = False

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")

    def for_output(self, signature: Mapping) -> nn.Module:
        """The loss to use on a head whose ``output_signature()`` is ``signature``: this one by default; a
        loss that does not fit the output raises ValueError or returns the loss that does."""
        return self


def _refuse_multi_label(name: str, signature: Mapping) -> None:
    if signature.get("multi_label"):
        raise ValueError(f"{name} compares softmax distributions over mutually exclusive classes, but the head "
                         f"({signature.get('head')}) is multi-label (an independent sigmoid per class); use "
                         f"MultiLabelKDLoss, or LogitKDLoss, which becomes it on multi-label heads")


@MODELS.register_module()
class LogitKDLoss(SoftLoss):
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network": KD on logits ``[B, C]``.

    On a multi-label head (``output_signature()["multi_label"]``) the softmax has no meaning; there it
    becomes ``MultiLabelKDLoss`` (binary KD per class) with the same temperature and weight.
    """

    def __init__(self, temperature: float = 2.0, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        self.temperature = _check_temperature("LogitKDLoss", temperature)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return self.loss_weight * logit_kd_loss(student, teacher, self.temperature)

    def for_output(self, signature: Mapping) -> nn.Module:
        if not signature.get("multi_label"):
            return self
        return MODELS.build(dict(type="MultiLabelKDLoss", temperature=self.temperature, loss_weight=self.loss_weight))


@MODELS.register_module()
class PixelwiseKLLoss(SoftLoss):
    """Hinton KD per pixel of seg logits ``[B, C, H, W]``, ignore pixels excluded, ``T^2`` scaled.

    Averaged over pixels but not over classes: ``KLDivLoss(reduction="mean")`` of the original recipe also
    divides by C, which shrinks the soft loss (and its gradient) by the class count, silently changing
    what ``alpha`` means from one dataset to another; the per-pixel KL is a sum over classes.
    """

    needs_target = True  # optional: only the ignore mask is read

    def __init__(self, temperature: float = 2.0, ignore_index: int = IGNORE_INDEX, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        self.temperature = _check_temperature("PixelwiseKLLoss", temperature)
        self.ignore_index = int(ignore_index)

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        loss = pixelwise_kl_loss(student, teacher, self.temperature, target, self.ignore_index)
        return self.loss_weight * loss


@MODELS.register_module()
class DetOutputMSELoss(SoftLoss):
    """MSE on det outputs ``[B, N, 5 + C]`` (Mehta & Ozturk 2018): optional objectness weighting,
    objectness/class errors on logits or (``probabilities=True``, the paper's form) on sigmoid probabilities,
    and a mean over elements or (``normalize="teacher_objectness"``) a sum over the teacher's object count."""

    def __init__(self, box: float = 1.0, obj: float = 1.0, cls: float = 1.0, objectness_weighted: bool = False,
                 probabilities: bool = False, normalize: str = "mean", loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if normalize not in DET_KD_NORMALIZE:
            raise ValueError(f"DetOutputMSELoss: normalize must be one of {DET_KD_NORMALIZE}, got {normalize!r}")
        self.box, self.obj, self.cls = float(box), float(obj), float(cls)
        self.objectness_weighted = bool(objectness_weighted)
        self.probabilities = bool(probabilities)
        self.normalize = normalize

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        loss = det_output_mse_loss(student, teacher, self.box, self.obj, self.cls, self.objectness_weighted,
                                   self.probabilities, self.normalize)
        return self.loss_weight * loss


@MODELS.register_module()
class FeatureKDLoss(SoftLoss):
    """FitNets-style hint loss (Romero et al. 2015): 1x1 conv adapter on the student map, then MSE, cosine
    or PKD's Pearson form (Cao et al. 2022; see :func:`feature_kd_loss`).

    The adapter maps ``student_channels`` to ``teacher_channels`` and trains with the student; with equal
    channel counts it starts as the identity, so identical features start at zero loss.
    """

    def __init__(self, student_channels: int, teacher_channels: int, mode: str = "mse", loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if mode not in FEATURE_KD_MODES:
            raise ValueError(f"FeatureKDLoss: mode must be one of {FEATURE_KD_MODES}, got {mode!r}")
        self.mode = mode
        self.adapter = nn.Conv2d(int(student_channels), int(teacher_channels), kernel_size=1)
        if student_channels == teacher_channels:
            with torch.no_grad():
                self.adapter.weight.copy_(torch.eye(teacher_channels)[:, :, None, None])
                self.adapter.bias.zero_()

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.dim() != 4 or student.shape[1] != self.adapter.in_channels:
            raise ValueError(f"FeatureKDLoss: expected student features [B, {self.adapter.in_channels}, H, W], "
                             f"got shape {tuple(student.shape)}")
        return self.loss_weight * feature_kd_loss(self.adapter(student), teacher, self.mode)


@MODELS.register_module()
class DKDLoss(SoftLoss):
    """Zhao et al. 2022, "Decoupled Knowledge Distillation": TCKD + NCKD on logits ``[B, C]``.

    Reads the class labels; on a batch without them (``target=None``) the teacher's top class stands in.
    """

    needs_target = True

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature = _check_temperature("DKDLoss", temperature)

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        loss = dkd_loss(student, teacher, target, self.alpha, self.beta, self.temperature)
        return self.loss_weight * loss

    def for_output(self, signature: Mapping) -> nn.Module:
        _refuse_multi_label("DKDLoss", signature)
        return self


@MODELS.register_module()
class CWDLoss(SoftLoss):
    """Shu et al. 2021, "Channel-wise Knowledge Distillation for Dense Prediction", on maps ``[B, C, H, W]``."""

    def __init__(self, temperature: float = 4.0, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        self.temperature = _check_temperature("CWDLoss", temperature)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return self.loss_weight * cwd_loss(student, teacher, self.temperature)


# -- depth -------------------------------------------------------------------------------------------
DEPTH_KD_MODES = ("l1", "l2")  # DepthKDLoss(mode=...)


def depth_kd_loss(student: Tensor, teacher: Tensor, mode: str = "l1") -> Tensor:
    """Pixel-wise distillation of depth (Liu et al. 2020, "Structured Knowledge Distillation for Dense
    Prediction", its pixel-wise term on regression maps): ``mean |s - t|`` (``l1``) or ``mean (s - t)^2``
    (``l2``) over pixels between log-depth maps ``[B, 1, h, w]``; the teacher is resized (bilinear) to the
    student's ``h, w``. In log space the error is relative, so near and far pixels weigh alike.
    """
    if mode not in DEPTH_KD_MODES:
        raise ValueError(f"DepthKDLoss: mode must be one of {DEPTH_KD_MODES}, got {mode!r}")
    _check_maps("DepthKDLoss", student, teacher)
    if student.shape[1] != 1:
        raise ValueError(f"DepthKDLoss: expected log-depth maps [B, 1, H, W], got student {tuple(student.shape)} "
                         f"and teacher {tuple(teacher.shape)}")
    student, teacher = _at_least_fp32(student), _at_least_fp32(teacher)
    diff = student - _resize_to(teacher, student.shape[-2:])
    return diff.abs().mean() if mode == "l1" else (diff ** 2).mean()


@MODELS.register_module()
class DepthKDLoss(SoftLoss):
    """Pixel-wise KD of log-depth maps ``[B, 1, H, W]`` (Liu et al. 2020), L1 or L2; see :func:`depth_kd_loss`."""

    def __init__(self, mode: str = "l1", loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if mode not in DEPTH_KD_MODES:
            raise ValueError(f"DepthKDLoss: mode must be one of {DEPTH_KD_MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return self.loss_weight * depth_kd_loss(student, teacher, self.mode)
