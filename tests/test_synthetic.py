import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtkd.data import CocoMultiTaskDataset, make_synthetic_dataset
from mtkd.data.synthetic import SHAPES, SYNTHETIC_VERSION, render_scene

# sha256 of what version 1 (before depth) wrote for make_synthetic_dataset(root, 3, 2, 1, size=48, seed=7):
# the images, and the jsons re-dumped without the keys version 2 added (the README's numbers were measured
# on these bytes, so the depth maps must never change them)
VERSION_1_SHA256 = {
    "annotations/instances_test.json": "d2bf4387570cf1181b173f432a50ff002ac9b701315bd0aab472b02ee3841a95",
    "annotations/instances_train.json": "54ce3d73678618f945d28c7fe6d35dbbddab534ad8cf7aa61306b292b4768314",
    "annotations/instances_val.json": "3d651e494fe87182e3befc3b87170c7e7e4039cc0cc5d9b201a74e3588d45b54",
    "images/test/test_000000.png": "35603248bf2b6573f4faa080506b74efab587a2a530f44bf330c050e218f22b7",
    "images/train/train_000000.png": "66c4f794eda676e5ebc11c13a11408cbd2bd6330a74d95c9105370c467951d31",
    "images/train/train_000001.png": "107030aa264c5025e7c62cbd6f5928213fdca8d19d419dd406792df1a090c36b",
    "images/train/train_000002.png": "63b2a6fc43b5fddc1da16acec4fdc2a9b951ca8e7845167e4bcc61e0eb1e854e",
    "images/val/val_000000.png": "b279a132bb3771308e6d4f47acb078a2868e7a1db6390a877e33c0881f0b137f",
    "images/val/val_000001.png": "a947129bc680fb38d02e6ed8b0920f55a4336d13a033847aacf57354b0ac349e",
}


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
    assert sum(name.startswith("depth/") for name in digest(tmp_path / "a")) == 10   # depth maps too
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


def test_images_and_json_stay_byte_identical_to_version_1(tmp_path):
    make_synthetic_dataset(tmp_path, 3, 2, 1, size=48, seed=7, workers=1, progress=False)
    found = {}
    for name in VERSION_1_SHA256:
        data = (tmp_path / name).read_bytes()
        if name.endswith(".json"):
            content = json.loads(data)
            split = name.split("_")[-1][:-5]
            assert content.pop("depth_dir") == f"depth/{split}" and content.pop("depth_scale") == 0.001
            assert content["info"].pop("version") == SYNTHETIC_VERSION == 2
            data = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        found[name] = hashlib.sha256(data).hexdigest()
    assert found == VERSION_1_SHA256
    assert sorted(p.name for p in (tmp_path / "depth" / "train").iterdir()) == [
        "train_000000.png", "train_000001.png", "train_000002.png"]


def neighbours(mask):
    """8-neighbourhood dilation of a bool mask minus the mask (numpy shifts, zero outside the image)."""
    padded = np.pad(mask, 1)
    grown = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            grown |= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return grown & ~mask


def test_depth_loads_in_metres_consistent_with_the_masks_and_the_drawing_order(tiny_synthetic):
    dataset = CocoMultiTaskDataset(tiny_synthetic, "annotations/instances_train.json", "images/train")
    assert dataset.tasks == ("seg", "det", "cls", "depth")
    shadows = 0
    for index in range(len(dataset)):
        image_id = dataset.image_ids[index]
        depth = dataset[index]["depth"]
        assert depth.dtype == torch.float32 and depth.shape == (64, 64)
        depth = depth.numpy().astype(np.float64)
        png = np.asarray(Image.open(tiny_synthetic / "depth" / "train" / f"train_{image_id - 1:06d}.png"))
        assert png.dtype == np.uint16 and np.allclose(depth, png * 0.001, rtol=1e-6)
        masks = [dataset.coco.annToMask(a).astype(bool) for a in dataset.coco.imgToAnns[image_id]]  # drawing order
        owner = np.full((64, 64), -1)
        for k, mask in enumerate(masks):
            owner[mask] = k
        values = []
        for mask in masks:
            known = np.unique(depth[mask & (depth > 0)])
            assert len(known) == 1, known       # one flat depth per visible object
            values.append(float(known[0]))
        assert all(later < earlier for earlier, later in zip(values, values[1:]))   # drawn later = nearer
        background = depth[(owner == -1) & (depth > 0)]
        assert background.min() > max(values) and 5.5 <= background.min() and background.max() <= 10.5
        surface = np.where(owner >= 0, np.array(values + [np.inf])[owner], np.inf)  # background: farther
        expected = np.zeros((64, 64), bool)
        for mask, value in zip(masks, values):
            expected |= neighbours(mask) & (surface > value)   # the shadow falls on what lies behind
        assert np.array_equal(depth == 0, expected)
        shadows += int(expected.sum())
    assert 0 < shadows < 0.1 * 64 * 64 * len(dataset)
