import hashlib
import json

import numpy as np
import pytest
import torch

from mtkd.data import CocoMultiTaskDataset, make_synthetic_dataset
from mtkd.data.synthetic import SHAPES, render_scene


def digest(root):
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def mask_box(mask):
    """xyxy of a binary mask's pixels, box-convention (right/bottom edges exclusive)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_synthetic_dataset(tmp_path / name, 6, 2, 2, size=48, seed=seed, workers=1, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    other = digest(tmp_path / "c")
    assert other.keys() == digest(tmp_path / "a").keys() and other != digest(tmp_path / "a")


def test_round_trip_gives_back_the_drawn_masks_boxes_and_label(tiny_synthetic):
    dataset = CocoMultiTaskDataset(tiny_synthetic, "annotations/instances_train.json", "images/train")
    for index in range(len(dataset)):
        image_id = dataset.image_ids[index]
        _, objects, label = render_scene([0, 0, image_id - 1], 64)   # what the generator drew for this image
        anns = dataset.coco.imgToAnns[image_id]
        assert len(anns) == len(objects)
        semantic = np.zeros((64, 64), np.int64)
        for ann, obj in zip(anns, objects):
            decoded = dataset.coco.annToMask(ann).astype(bool)
            drawn = obj["mask"].astype(bool)
            assert (decoded & drawn).sum() / (decoded | drawn).sum() > 0.99
            assert ann["category_id"] == obj["class_id"] + 1
            x0, y0, x1, y1 = mask_box(drawn)
            assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
            semantic[drawn] = obj["class_id"] + 1
        sample = dataset[index]
        assert torch.equal(sample["seg"], torch.from_numpy(semantic))
        drawn_boxes = [mask_box(obj["mask"]) for obj in objects]
        assert sample["boxes"].tolist() == drawn_boxes   # no augmentation: input pixels are drawn pixels
        assert sample["labels"].tolist() == [obj["class_id"] for obj in objects]
        assert int(sample["cls"]) == label == dataset.coco.imgs[image_id]["label"]
        areas = np.bincount([o["class_id"] for o in objects], weights=[o["mask"].sum() for o in objects],
                            minlength=len(SHAPES))
        assert label == int(areas.argmax())


def test_json_lists_image_categories_and_every_shape(tiny_synthetic):
    data = json.loads((tiny_synthetic / "annotations" / "instances_val.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(SHAPES)
    assert [c["name"] for c in data["image_categories"]] == list(SHAPES)
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in data["annotations"])
    assert all(1 <= len([a for a in data["annotations"] if a["image_id"] == im["id"]]) <= 6 for im in data["images"])


def test_too_small_size_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least 32"):
        make_synthetic_dataset(tmp_path, 1, 1, 1, size=16, progress=False)
