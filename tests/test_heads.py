"""Each head overfits a fixed tiny batch: its hard loss falls by >= 80% and its decoded predictions (eval
mode, through ``predict``) match the labels it was fitted to (a learning, not a shape, check)."""
import pytest
import torch
from torchvision.ops import box_iou

from mtkd.models import MultiTaskModel
from mtkd.structures import class_map

STEPS = {"seg": 30, "det": 60, "cls": 20}


def fixed_batch():
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(4, 3, 32, 32, generator=gen)
    seg = torch.zeros(4, 32, 32, dtype=torch.long)
    seg[:, 8:20, 6:22] = 1
    seg[:2, 24:30, 20:30] = 2
    seg[3, :2] = 255
    boxes = [torch.tensor([[6.0, 8.0, 22.0, 20.0], [20.0, 24.0, 30.0, 30.0]])] * 2 + [torch.tensor([[6.0, 8.0, 22.0, 20.0]])] * 2
    labels = [torch.tensor([0, 1])] * 2 + [torch.tensor([1])] * 2
    return {"img": img, "seg": seg, "boxes": boxes, "labels": labels, "cls": torch.tensor([0, 1, 2, 1])}


def matches_labels(task, pred, batch):
    """Whether the decoded predictions reproduce the fitted labels."""
    if task == "seg":
        kept = batch["seg"] != 255
        classes = class_map(torch.stack(pred), tuple(batch["seg"].shape[-2:]))
        return (classes[kept] == batch["seg"][kept]).float().mean() > 0.95
    if task == "cls":
        return torch.equal(pred.argmax(1), batch["cls"])
    for image, gt_boxes, gt_labels in zip(pred, batch["boxes"], batch["labels"]):
        top = image["boxes"][: len(gt_boxes)]  # sorted by score: the best K for K objects
        if len(top) < len(gt_boxes):
            return False
        iou = box_iou(gt_boxes, top)
        best = iou.argmax(1)
        if iou.max(1).values.min() < 0.7 or not torch.equal(image["labels"][best], gt_labels):
            return False
    return True


@pytest.mark.parametrize("task, head", [
    ("seg", dict(type="SegHead", channels=16)),
    ("det", dict(type="DetHead", strides=(8, 16), channels=16)),
    ("det", dict(type="DetHead", strides=(8, 16), channels=16, box_loss="ciou")),
    ("cls", dict(type="ClsHead")),
])
def test_head_overfits_a_fixed_batch(task, head):
    torch.manual_seed(0)
    model = MultiTaskModel(backbone=dict(type="SeedConvNet", channels=(16, 16, 32, 32), out_indices=(1, 2, 3)),
                           neck=dict(type="FPN", out_channels=16), heads={task: head},
                           num_classes={"seg": 3, "det": 2, "cls": 3})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = fixed_batch()
    losses = []
    for _ in range(STEPS[task]):
        loss = model.forward_loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    model.eval()
    with torch.no_grad():
        assert matches_labels(task, model.predict(model(batch["img"]), batch)[task], batch)
