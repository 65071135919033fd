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

STANDARDIZE_EPS = 1e-7  # logit standardization's (z - mean) / (std + eps), as in Sun et al.'s code


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


# -- logit standardization ---------------------------------------------------------------------------
def standardize_logits(logits: Tensor, dim: int = 1) -> Tensor:
    """Sun et al. 2024, "Logit Standardization in Knowledge Distillation" (CVPR): each logit vector along
    ``dim`` becomes ``(z - mean(z)) / (std(z) + 1e-7)``, std unbiased, as in the authors' code.

    The student then matches the teacher's ranking and relative gaps instead of its logit range, which a
    smaller network cannot reach; the shared temperature no longer has to fit both. Computed in float32
    for half-precision inputs. Needs at least 2 classes along ``dim``.
    """
    if logits.shape[dim] < 2:
        raise ValueError(f"logit standardization needs at least 2 classes along dim {dim}, got logits of "
                         f"shape {tuple(logits.shape)}")
    logits = _at_least_fp32(logits)
    mean = logits.mean(dim=dim, keepdim=True)
    std = logits.std(dim=dim, keepdim=True)   # unbiased (correction=1), as torch.Tensor.std in their code
    return (logits - mean) / (std + STANDARDIZE_EPS)


def refuse_standardize(name: str, standardize: bool, compares: str) -> None:
    """``standardize=True`` on a loss with no class-logit vectors (a regression, features) is an error."""
    if standardize:
        raise ValueError(f"{name}: standardize=True has no meaning here: logit standardization (Sun et al. 2024) "
                         f"rescales vectors of class logits before a softmax, and {name} compares {compares}. "
                         f"Losses that take it: {', '.join(STANDARDIZABLE)}")


STANDARDIZABLE = ("LogitKDLoss", "DKDLoss", "PixelwiseKLLoss", "DetOutputMSELoss (its class part)")


# -- functional core ---------------------------------------------------------------------------------
def logit_kd_loss(student: Tensor, teacher: Tensor, temperature: float, standardize: bool = False) -> Tensor:
    """Hinton et al. 2015 KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))`` summed over classes, batch mean;
    with ``standardize`` both logit vectors are standardized first (:func:`standardize_logits`).

    Args: student, teacher: logits ``[B, C]``.
    """
    _check_same_shape("LogitKDLoss", student, teacher, "[B, C] logits")
    if student.dim() != 2:
        raise ValueError(f"LogitKDLoss: expected logits [B, C], got shape {tuple(student.shape)}")
    if standardize:
        student, teacher = standardize_logits(student), standardize_logits(teacher)
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * temperature ** 2


def pixelwise_kl_loss(student: Tensor, teacher: Tensor, temperature: float, target: Tensor | None = None,
                      ignore_index: int = IGNORE_INDEX, standardize: bool = False) -> Tensor:
    """Per-pixel KD: ``T^2 * KL`` summed over classes, averaged over the kept pixels; with ``standardize``
    each pixel's class-logit vector is standardized first (teacher after resizing).

    Args: student ``[B, C, h, w]``; teacher ``[B, C, H, W]`` (resized to ``h, w``); target ``[B, H0, W0]``
    labels, resized with nearest to ``h, w``, where ``ignore_index`` pixels are excluded. All pixels
    ignored gives 0 (still part of the graph).
    """
    _check_maps("PixelwiseKLLoss", student, teacher)
    teacher = _resize_to(teacher, student.shape[-2:])
    if standardize:
        student, teacher = standardize_logits(student), standardize_logits(teacher)
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


def dkd_loss(student: Tensor, teacher: Tensor, target: Tensor | None, alpha: float = 1.0, beta: float = 8.0,
             temperature: float = 4.0, standardize: bool = False) -> Tensor:
    """Decoupled KD (Zhao et al. 2022): ``T^2 * (alpha * TCKD + beta * NCKD)``, batch mean.

    TCKD is the KL between the binary (target, rest) probabilities, NCKD the KL between the distributions
    over the non-target classes. Args: logits ``[B, C]``, target class ids ``[B]``, or None (a batch
    without labels): then the teacher's top class ``teacher.argmax(1)`` is the target, so that DKD trains on
    partially labelled data (the split then follows the teacher's belief instead of the ground truth).
    With ``standardize`` both logit vectors are standardized first (Sun et al. 2024 apply it to DKD too).
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
    if standardize:
        student, teacher = standardize_logits(student), standardize_logits(teacher)
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


def _check_standardizable(name: str, standardize: bool, signature: Mapping) -> None:
    """Standardization needs a softmax over at least 2 classes: not a multi-label head, not one class."""
    if not standardize:
        return
    if signature.get("multi_label"):
        raise ValueError(f"{name}(standardize=True): the head ({signature.get('head')}) is multi-label (an independent "
                         f"sigmoid per class); logit standardization rescales a softmax's logit vector, which such a "
                         f"head has not; drop standardize")
    if signature.get("num_classes") is not None and int(signature["num_classes"]) < 2:
        raise ValueError(f"{name}(standardize=True): the head ({signature.get('head')}) has "
                         f"{signature['num_classes']} class; standardizing a vector needs at least 2")


def _refuse_multi_label(name: str, signature: Mapping) -> None:
    if signature.get("multi_label"):
        raise ValueError(f"{name} compares softmax distributions over mutually exclusive classes, but the head "
                         f"({signature.get('head')}) is multi-label (an independent sigmoid per class); use "
                         f"MultiLabelKDLoss, or LogitKDLoss, which becomes it on multi-label heads")


@MODELS.register_module()
class LogitKDLoss(SoftLoss):
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network": KD on logits ``[B, C]``.

    ``standardize=True``: logit standardization first (Sun et al. 2024, :func:`standardize_logits`).
    On a multi-label head (``output_signature()["multi_label"]``) the softmax has no meaning; there it
    becomes ``MultiLabelKDLoss`` (binary KD per class) with the same temperature and weight.
    """

    def __init__(self, temperature: float = 2.0, loss_weight: float = 1.0, standardize: bool = False):
        super().__init__(loss_weight)
        self.temperature = _check_temperature("LogitKDLoss", temperature)
        self.standardize = bool(standardize)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return self.loss_weight * logit_kd_loss(student, teacher, self.temperature, self.standardize)

    def for_output(self, signature: Mapping) -> nn.Module:
        _check_standardizable("LogitKDLoss", self.standardize, signature)
        if not signature.get("multi_label"):
            return self
        return MODELS.build(dict(type="MultiLabelKDLoss", temperature=self.temperature, loss_weight=self.loss_weight))


@MODELS.register_module()
class PixelwiseKLLoss(SoftLoss):
    """Hinton KD per pixel of seg logits ``[B, C, H, W]``, ignore pixels excluded, ``T^2`` scaled.

    Averaged over pixels but not over classes: ``KLDivLoss(reduction="mean")`` of the original recipe also
    divides by C, which shrinks the soft loss (and its gradient) by the class count, silently changing
    what ``alpha`` means from one dataset to another; the per-pixel KL is a sum over classes.
    ``standardize=True``: each pixel's logit vector is standardized first (Sun et al. 2024).
    """

    needs_target = True  # optional: only the ignore mask is read

    def __init__(self, temperature: float = 2.0, ignore_index: int = IGNORE_INDEX, loss_weight: float = 1.0,
                 standardize: bool = False):
        super().__init__(loss_weight)
        self.temperature = _check_temperature("PixelwiseKLLoss", temperature)
        self.ignore_index = int(ignore_index)
        self.standardize = bool(standardize)

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        loss = pixelwise_kl_loss(student, teacher, self.temperature, target, self.ignore_index, self.standardize)
        return self.loss_weight * loss

    def for_output(self, signature: Mapping) -> nn.Module:
        _check_standardizable("PixelwiseKLLoss", self.standardize, signature)
        return self


@MODELS.register_module()
class DKDLoss(SoftLoss):
    """Zhao et al. 2022, "Decoupled Knowledge Distillation": TCKD + NCKD on logits ``[B, C]``.

    Reads the class labels; on a batch without them (``target=None``) the teacher's top class stands in.
    ``standardize=True``: logit standardization first (Sun et al. 2024).
    """

    needs_target = True

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, loss_weight: float = 1.0,
                 standardize: bool = False):
        super().__init__(loss_weight)
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature = _check_temperature("DKDLoss", temperature)
        self.standardize = bool(standardize)

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        loss = dkd_loss(student, teacher, target, self.alpha, self.beta, self.temperature, self.standardize)
        return self.loss_weight * loss

    def for_output(self, signature: Mapping) -> nn.Module:
        _refuse_multi_label("DKDLoss", signature)
        _check_standardizable("DKDLoss", self.standardize, signature)
        return self


@MODELS.register_module()
class CWDLoss(SoftLoss):
    """Shu et al. 2021, "Channel-wise Knowledge Distillation for Dense Prediction", on maps ``[B, C, H, W]``."""

    def __init__(self, temperature: float = 4.0, loss_weight: float = 1.0, standardize: bool = False):
        super().__init__(loss_weight)
        refuse_standardize("CWDLoss", standardize, "each channel's spatial distribution (not a class-logit vector)")
        self.temperature = _check_temperature("CWDLoss", temperature)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return self.loss_weight * cwd_loss(student, teacher, self.temperature)
