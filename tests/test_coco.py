import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from mtkd.data import CocoMultiTaskDataset, InvalidSampleError


def rle(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode()}


def write_set(root, anns=None, images=None, mode="RGB", image_categories=True):
    """Two 32x32 images; image 1 has a square (cat 1) and a crowd region, image 2 has no objects."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new(mode, (32, 32)).save(root / "img" / name)
    square = np.zeros((32, 32), np.uint8)
    square[4:12, 6:16] = 1
    crowd = np.zeros((32, 32), np.uint8)
    crowd[20:30, 20:30] = 1
    content = {
        "images": images or [{"id": 1, "file_name": "a.png", "width": 32, "height": 32, "label": 1},
                             {"id": 2, "file_name": "b.png", "width": 32, "height": 32, "label": 0}],
        "annotations": anns if anns is not None else [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [6, 4, 10, 8], "area": 80, "iscrowd": 0,
             "segmentation": rle(square)},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 1,
             "segmentation": rle(crowd)}],
        "categories": [{"id": 1, "name": "square"}, {"id": 3, "name": "circle"}],
    }
    if image_categories:
        content["image_categories"] = [{"id": 0, "name": "none"}, {"id": 1, "name": "some"}]
    (root / "ann.json").write_text(json.dumps(content))
    return root


def build(root, **kwargs):
    return CocoMultiTaskDataset(root, "ann.json", "img", **kwargs)


def test_sample_contract_crowd_and_empty_images(tmp_path):
    dataset = build(write_set(tmp_path))
    assert dataset.num_classes == {"seg": 3, "det": 2, "cls": 2} and dataset.label_to_cat_id == [1, 3]
    sample = dataset[0]
    assert sample["img"].shape == (3, 32, 32) and sample["img"].dtype == torch.float32
    assert sample["boxes"].tolist() == [[6, 4, 16, 12]] and sample["labels"].tolist() == [0]  # crowd excluded
    assert (sample["seg"][4:12, 6:16] == 1).all() and (sample["seg"][20:30, 20:30] == 255).all()
    assert int(sample["cls"]) == 1 and sample["meta"]["image_id"] == 1
    empty = dataset[1]
    assert len(dataset) == 2 and empty["boxes"].shape == (0, 4) and (empty["seg"] == 0).all()


def test_tasks_subset_and_json_without_image_labels(tmp_path):
    only_det = build(write_set(tmp_path / "a"), tasks=("det",))
    assert set(only_det[0]) == {"img", "boxes", "labels", "meta"}
    no_cls = build(write_set(tmp_path / "b", image_categories=False))
    assert "cls" not in no_cls[0] and no_cls.tasks == ("seg", "det")
    with pytest.raises(ValueError, match="not available"):
        build(write_set(tmp_path / "c", image_categories=False), tasks=("cls",))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_palette_are_converted(tmp_path, mode):
    assert build(write_set(tmp_path, mode=mode))[0]["img"].shape == (3, 32, 32)


def bad_ann(**change):
    ann = {"id": 77, "image_id": 1, "category_id": 1, "bbox": [6, 4, 10, 8], "area": 80, "iscrowd": 0,
           "segmentation": [[6, 4, 16, 4, 16, 12, 6, 12]]}
    ann.update(change)
    return [ann]


@pytest.mark.parametrize("anns, message", [
    (bad_ann(bbox=[20, 20, 30, 30]), "box outside the image"),
    (bad_ann(bbox=[6, 4, 0, 8]), "zero-area box"),
    (bad_ann(category_id=9), "unknown category id"),
    (bad_ann(segmentation={"size": [16, 16], "counts": "0"}), "mask of the wrong size"),
])
def test_bad_annotations_raise_naming_file_and_id_or_are_skipped(tmp_path, anns, message, caplog):
    root = write_set(tmp_path, anns=anns)
    with pytest.raises(InvalidSampleError, match=message) as info:
        build(root)
    assert "annotation id 77" in str(info.value) and "ann.json" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="mtkd"):
        dataset = build(root, skip_invalid=True)
    assert len(dataset) == 1 and dataset.image_ids == [2]
    assert "skipped 1 of 2 images" in caplog.text


def test_missing_and_corrupt_images(tmp_path, caplog):
    root = write_set(tmp_path)
    (root / "img" / "b.png").unlink()
    with pytest.raises(InvalidSampleError, match="image file not found.*b.png"):
        build(root)
    with caplog.at_level(logging.WARNING, logger="mtkd"):
        assert len(build(root, skip_invalid=True)) == 1
    (root / "img" / "a.png").write_bytes(b"not a png")
    with pytest.raises(InvalidSampleError, match="cannot read image .*a.png"):
        build(root, skip_invalid=True)[0]


def test_mask_dir_png_of_wrong_size(tmp_path):
    root = write_set(tmp_path)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "a.png")
    with pytest.raises(InvalidSampleError, match="mask of the wrong size.*a.png"):
        build(root, mask_dir="masks")[0]


def test_invalid_and_missing_json(tmp_path):
    (tmp_path / "ann.json").write_text("{not json")
    with pytest.raises(ValueError, match="ann.json is not valid json"):
        build(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoMultiTaskDataset(tmp_path, "nope.json", "img")
