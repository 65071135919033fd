import pytest
import torch

from mtkd.data import collate


def sample(n_boxes):
    return {"img": torch.zeros(3, 8, 8), "seg": torch.zeros(8, 8, dtype=torch.long), "cls": torch.tensor(1),
            "boxes": torch.zeros(n_boxes, 4), "labels": torch.zeros(n_boxes, dtype=torch.long), "meta": {"id": n_boxes}}


LISTED = ("boxes", "labels", "meta")


def test_stacks_dense_keys_and_lists_per_image_keys():
    batch = collate([sample(0), sample(3)], listed=LISTED)
    assert batch["img"].shape == (2, 3, 8, 8) and batch["seg"].shape == (2, 8, 8) and batch["cls"].tolist() == [1, 1]
    assert [b.shape[0] for b in batch["boxes"]] == [0, 3] and [m["id"] for m in batch["meta"]] == [0, 3]


def test_only_present_tasks_are_collated():
    samples = [sample(2), sample(1)]
    for s in samples:
        del s["seg"], s["cls"]
    assert set(collate(samples, listed=LISTED)) == {"img", "boxes", "labels", "meta"}


def test_mismatched_keys_and_shapes_are_errors():
    partial = sample(1)
    del partial["cls"]
    with pytest.raises(KeyError, match="key 'cls' is in sample 0 but not in sample 2"):
        collate([sample(1), sample(2), partial])
    with pytest.raises(KeyError, match="key 'cls' is in sample 1 but not in sample 0"):
        collate([partial, sample(2)])
    other = sample(1)
    other["img"] = torch.zeros(3, 4, 4)
    with pytest.raises(ValueError, match="'img' tensors differ in shape"):
        collate([sample(1), other], listed=LISTED)


def test_what_is_stacked_is_what_the_dataset_does_not_list():
    """Same-shape per-image tensors are stacked unless listed; listed ones stay lists even when shapes agree."""
    samples = [sample(2), sample(2)]
    stacked = collate(samples, listed=("meta",))
    assert stacked["boxes"].shape == (2, 2, 4)
    listed = collate(samples, listed=LISTED)
    assert isinstance(listed["boxes"], list) and len(listed["boxes"]) == 2
    assert isinstance(collate(samples)["meta"], list)   # meta is listed by default
