"""Soft loss of multi-label classification: binary KD per class on sigmoid probabilities.

Softmax KD (``LogitKDLoss``, ``DKDLoss``) compares distributions over mutually exclusive classes; a
multi-label head's classes are independent yes/no questions, each with its own sigmoid. A ``LogitKDLoss``
configured for such a head becomes this loss (``LogitKDLoss.for_output``), so a KD config needs no switch
when the data is multi-label.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mtkd.distill.losses import SoftLoss, _at_least_fp32, _check_same_shape, _check_temperature, refuse_standardize
from mtkd.registry import MODELS


def multi_label_kd_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(Bernoulli(sigmoid(t/T)) || Bernoulli(sigmoid(s/T)))`` per class, mean over images and classes.

    Args: student, teacher: logits ``[B, C]``. Computed from log-sigmoids, so saturated logits stay finite.
    """
    _check_same_shape("MultiLabelKDLoss", student, teacher, "[B, C] logits")
    if student.dim() != 2:
        raise ValueError(f"MultiLabelKDLoss: expected logits [B, C], got shape {tuple(student.shape)}")
    student, teacher = _at_least_fp32(student) / temperature, _at_least_fp32(teacher) / temperature
    log_p_t, log_q_t = F.logsigmoid(teacher), F.logsigmoid(-teacher)   # log p, log (1 - p)
    kl = log_p_t.exp() * (log_p_t - F.logsigmoid(student)) + log_q_t.exp() * (log_q_t - F.logsigmoid(-student))
    return kl.mean() * temperature ** 2


@MODELS.register_module()
class MultiLabelKDLoss(SoftLoss):
    """Binary KD per class for multi-label logits ``[B, C]`` (see :func:`multi_label_kd_loss`).

    The multi-label logits distillation (MLD) term of Yang et al. 2023, "Multi-Label Knowledge
    Distillation" (ICCV): one binary KL divergence per label between the teacher's and the student's
    sigmoid probabilities. Two choices differ from their code: the logits are divided by a temperature
    ``T`` with a ``T^2`` factor, as in Hinton et al. 2015 (``T = 1`` is their form), and the divergences
    are averaged over classes instead of summed (theirs is ``C`` times larger), so that the soft term has
    the scale of the hard loss, a binary cross-entropy averaged over images and classes, and ``alpha``
    means the same whatever the class count.
    """

    def __init__(self, temperature: float = 1.0, loss_weight: float = 1.0, standardize: bool = False):
        super().__init__(loss_weight)
        refuse_standardize("MultiLabelKDLoss", standardize, "independent per-class sigmoids (no softmax)")
        self.temperature = _check_temperature("MultiLabelKDLoss", temperature)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return self.loss_weight * multi_label_kd_loss(student, teacher, self.temperature)
