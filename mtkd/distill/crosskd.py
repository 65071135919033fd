"""CrossKD (Wang et al., CVPR 2024, "CrossKD: Cross-Head Knowledge Distillation for Object Detection").

The student's head towers feed the teacher's frozen prediction layers, and a soft loss compares those
cross-head predictions with the teacher's own. The student's prediction layers learn from the ground truth
only, so the two targets no longer pull them in different directions; the KD gradient reaches the student
through its towers. Heads declare the split (``forward_tower`` / ``forward_pred`` / ``tower_channels``,
``mtkd/models/heads/base.py``): DetHead (reg and cls towers -> their output convs) and SegHead (the fused
Semantic-FPN map -> the 1x1 classifier, the same idea for segmentation).
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtkd.distill.losses import SoftLoss
from mtkd.models.heads.base import SPLIT_MEMBERS, has_split
from mtkd.registry import MODELS


@MODELS.register_module()
class CrossKDLoss(SoftLoss):
    """``loss(teacher_head.forward_pred(adapt(student_towers)), teacher_raw)``; ``loss`` is any soft loss of
    the task's raw output (``DetOutputMSELoss`` for det, ``PixelwiseKLLoss`` for seg).

    ``adapt`` is a 1x1 conv per tower branch where the student's width differs from the teacher's (trained
    with the student), the identity where they are equal. The Distiller binds the loss to both heads
    (``bind``) once the teachers are built, and passes it the student's towers instead of its raw output.
    """

    cross_head = True   # the Distiller passes (student towers, teacher raw, teacher head[, target])

    def __init__(self, loss: Mapping, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if not isinstance(loss, Mapping) or "type" not in loss:
            raise ValueError(f"CrossKDLoss: loss must be the config of the soft loss that compares the cross-head "
                             f"and teacher predictions, e.g. dict(type='DetOutputMSELoss'), got {loss!r}")
        if loss["type"] in ("CrossKDLoss", CrossKDLoss):
            raise ValueError("CrossKDLoss: loss cannot be another CrossKDLoss")
        self.loss = MODELS.build(dict(loss))
        self.adapters = nn.ModuleDict()
        self.bound = False

    @property
    def needs_target(self) -> bool:   # noqa: D102  (the inner loss's)
        return bool(getattr(self.loss, "needs_target", False))

    def for_output(self, signature: Mapping) -> nn.Module:
        adapt = getattr(self.loss, "for_output", None)
        if adapt is not None:
            self.loss = adapt(signature)
        return self

    def bind(self, student_head: nn.Module, teacher_head: nn.Module, where: str) -> None:
        """Check that both heads declare the split with the same branches; build the adapters."""
        for role, head in (("student", student_head), ("teacher", teacher_head)):
            if not has_split(head):
                raise ValueError(f"{where}: CrossKDLoss feeds the student's head towers to the teacher's prediction "
                                 f"layers, but the {role}'s {type(head).__name__} does not declare that split "
                                 f"({', '.join(SPLIT_MEMBERS)}; see mtkd/models/heads/base.py)")
        s_channels, t_channels = student_head.tower_channels(), teacher_head.tower_channels()
        if set(s_channels) != set(t_channels):
            raise ValueError(f"{where}: CrossKDLoss: the student's {type(student_head).__name__} towers "
                             f"{sorted(s_channels)} are not the teacher's {type(teacher_head).__name__} towers "
                             f"{sorted(t_channels)}")
        self.adapters = nn.ModuleDict({branch: _adapter(s_channels[branch], width)
                                       for branch, width in t_channels.items()})
        self.bound = True

    def forward(self, student_tower: Mapping[str, list[Tensor]], teacher_raw: Tensor, teacher_head: nn.Module,
                target: object | None = None) -> Tensor:
        """``student_tower``: the student head's ``forward_tower`` output; ``teacher_raw``: the teacher's raw
        output (a fixed target); ``teacher_head``: frozen, the KD gradient flows through it to the student."""
        if not self.bound:
            raise RuntimeError("CrossKDLoss.bind(student_head, teacher_head) must run first (the Distiller does)")
        adapted = {branch: [self.adapters[branch](m) for m in maps] for branch, maps in student_tower.items()}
        cross = teacher_head.forward_pred(adapted)
        inner = self.loss(cross, teacher_raw, target) if self.needs_target else self.loss(cross, teacher_raw)
        return self.loss_weight * inner


def _adapter(student_channels: int, teacher_channels: int) -> nn.Module:
    """A 1x1 conv from the student's tower width to the teacher's; the identity when they are equal."""
    if student_channels == teacher_channels:
        return nn.Identity()
    return nn.Conv2d(int(student_channels), int(teacher_channels), kernel_size=1)


__all__ = ["CrossKDLoss"]
