"""Soft losses between real-valued outputs: raw detection outputs (box regression, objectness, class
logits), neck features, depth maps. The soft losses between class distributions are in ``losses.py``,
with the contract every soft loss follows."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkd.distill.losses import (SoftLoss, _at_least_fp32, _check_maps, _check_same_shape, _check_standardizable,
                                 _check_temperature, _resize_to, refuse_standardize, standardize_logits)
from mtkd.registry import MODELS

DET_KD_NORMALIZE = ("mean", "teacher_objectness")  # DetOutputMSELoss(normalize=...)
FEATURE_KD_MODES = ("mse", "cosine", "pearson")     # FeatureKDLoss(mode=...)


# -- detection outputs and features -----------------------------------------------------------------------
def det_output_mse_loss(student: Tensor, teacher: Tensor, box: float = 1.0, obj: float = 1.0, cls: float = 1.0,
                        objectness_weighted: bool = False, probabilities: bool = False,
                        normalize: str = "mean", standardize: bool = False, temperature: float = 1.0) -> Tensor:
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

    ``standardize`` replaces the class term by logit-standardized KD (Sun et al. 2024) at each location:
    the ``C`` class logits of teacher and student are standardized (:func:`standardize_logits`), then
    ``T^2 * KL(softmax(t/T) || softmax(s/T))`` summed over classes is the location's class error (one per
    location instead of ``C``), weighted and normalized as above. Box and objectness terms are unchanged.
    """
    if normalize not in DET_KD_NORMALIZE:
        raise ValueError(f"DetOutputMSELoss: normalize must be one of {DET_KD_NORMALIZE}, got {normalize!r}")
    _check_same_shape("DetOutputMSELoss", student, teacher, "raw det outputs [B, N, 5 + C]")
    if student.dim() != 3 or student.shape[-1] < 6:
        raise ValueError(f"DetOutputMSELoss: expected raw det outputs [B, N, 5 + C] with C >= 1, got shape "
                         f"{tuple(student.shape)}")
    student, teacher = _at_least_fp32(student), _at_least_fp32(teacher)  # sums over B * N: not in bf16 (AMP)
    teacher_objectness = teacher[..., 4:5].sigmoid()  # [B, N, 1]
    cls_kl = _standardized_class_kl(student[..., 5:], teacher[..., 5:], temperature) if standardize else None
    if probabilities:
        student = torch.cat([student[..., :4], student[..., 4:].sigmoid()], dim=-1)
        teacher = torch.cat([teacher[..., :4], teacher[..., 4:].sigmoid()], dim=-1)
    sq_err = (student - teacher) ** 2  # [B, N, 5 + C]
    box_err, obj_err, cls_err = sq_err[..., :4], sq_err[..., 4], sq_err[..., 5:] if cls_kl is None else cls_kl
    if objectness_weighted:
        box_err, cls_err = box_err * teacher_objectness, cls_err * teacher_objectness
    if normalize == "mean":
        return box * box_err.mean() + obj * obj_err.mean() + cls * cls_err.mean()
    total = box * box_err.sum() + obj * obj_err.sum() + cls * cls_err.sum()
    return total / teacher_objectness.sum().clamp(min=1.0)


def _standardized_class_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``[B, N, 1]``: per location, ``T^2 * KL`` between the softmaxes of the standardized class logits ``[B, N, C]``."""
    log_p_s = F.log_softmax(standardize_logits(student, dim=-1) / temperature, dim=-1)
    log_p_t = F.log_softmax(standardize_logits(teacher, dim=-1) / temperature, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1, keepdim=True) * temperature ** 2


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


@MODELS.register_module()
class DetOutputMSELoss(SoftLoss):
    """MSE on det outputs ``[B, N, 5 + C]`` (Mehta & Ozturk 2018): optional objectness weighting,
    objectness/class errors on logits or (``probabilities=True``, the paper's form) on sigmoid probabilities,
    and a mean over elements or (``normalize="teacher_objectness"``) a sum over the teacher's object count;
    ``standardize=True``: the class term becomes logit-standardized KD at ``temperature`` (Sun et al. 2024)."""

    def __init__(self, box: float = 1.0, obj: float = 1.0, cls: float = 1.0, objectness_weighted: bool = False,
                 probabilities: bool = False, normalize: str = "mean", loss_weight: float = 1.0,
                 standardize: bool = False, temperature: float | None = None):
        super().__init__(loss_weight)
        if normalize not in DET_KD_NORMALIZE:
            raise ValueError(f"DetOutputMSELoss: normalize must be one of {DET_KD_NORMALIZE}, got {normalize!r}")
        if standardize and not float(cls) > 0:
            raise ValueError(f"DetOutputMSELoss: standardize=True standardizes the class logits, but cls={cls} turns "
                             f"the class term off; box regression and objectness are never standardized")
        if temperature is not None and not standardize:
            raise ValueError(f"DetOutputMSELoss: temperature={temperature} is used only by the standardized class "
                             f"term (standardize=True); the MSE terms have none")
        self.standardize = bool(standardize)
        self.temperature = _check_temperature("DetOutputMSELoss", 2.0 if temperature is None else temperature)
        self.box, self.obj, self.cls = float(box), float(obj), float(cls)
        self.objectness_weighted = bool(objectness_weighted)
        self.probabilities = bool(probabilities)
        self.normalize = normalize

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        loss = det_output_mse_loss(student, teacher, self.box, self.obj, self.cls, self.objectness_weighted,
                                   self.probabilities, self.normalize, self.standardize, self.temperature)
        return self.loss_weight * loss

    def for_output(self, signature: Mapping) -> nn.Module:
        _check_standardizable("DetOutputMSELoss", self.standardize, signature)
        return self


@MODELS.register_module()
class FeatureKDLoss(SoftLoss):
    """FitNets-style hint loss (Romero et al. 2015): 1x1 conv adapter on the student map, then MSE, cosine
    or PKD's Pearson form (Cao et al. 2022; see :func:`feature_kd_loss`).

    The adapter maps ``student_channels`` to ``teacher_channels`` and trains with the student; with equal
    channel counts it starts as the identity, so identical features start at zero loss.
    """

    def __init__(self, student_channels: int, teacher_channels: int, mode: str = "mse", loss_weight: float = 1.0,
                 standardize: bool = False):
        super().__init__(loss_weight)
        refuse_standardize("FeatureKDLoss", standardize, "feature maps (not class logits)")
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

    def __init__(self, mode: str = "l1", loss_weight: float = 1.0, standardize: bool = False):
        super().__init__(loss_weight)
        refuse_standardize("DepthKDLoss", standardize, "log-depth regression maps")
        if mode not in DEPTH_KD_MODES:
            raise ValueError(f"DepthKDLoss: mode must be one of {DEPTH_KD_MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return self.loss_weight * depth_kd_loss(student, teacher, self.mode)
