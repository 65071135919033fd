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
    with pytest.raises(ValueError, match="asks for tasks .'cls'.*cannot provide.*provides .'seg', 'det'.*image_categories"):
        build(write_set(tmp_path / "c", image_categories=False), tasks=("cls",))


def test_image_labels_from_instances_are_the_multi_hot_object_categories(tmp_path):
    for root, image_categories in ((tmp_path / "a", True), (tmp_path / "b", False)):
        dataset = build(write_set(root, image_categories=image_categories), image_labels="instances")
        assert dataset.tasks == ("seg", "det", "cls") and dataset.num_classes["cls"] == 2
        assert dataset.class_names["cls"] == ["square", "circle"]
        assert dataset.head_args == {"cls": {"multi_label": True}}
        first, empty = dataset[0]["cls"], dataset[1]["cls"]
        assert first.dtype == torch.float32 and first.tolist() == [1.0, 0.0]   # the crowd circle does not count
        assert empty.tolist() == [0.0, 0.0]
    default = build(write_set(tmp_path / "c"))   # unchanged: images[i]["label"], single-label
    assert default.head_args == {} and default[0]["cls"].shape == () and int(default[0]["cls"]) == 1
    assert build(write_set(tmp_path / "d"), image_labels="json").head_args == {}
    reader = dict(type="ImageLabelTarget", image_labels="instances")   # the same through targets
    assert build(write_set(tmp_path / "e"), targets=dict(cls=reader)).head_args == {"cls": {"multi_label": True}}
    assert build(write_set(tmp_path / "f"), tasks=("det",), image_labels="instances").tasks == ("det",)


def test_image_labels_the_json_cannot_give_are_errors_naming_the_file(tmp_path):
    root = write_set(tmp_path / "a", anns=[])
    content = json.loads((root / "ann.json").read_text())
    (root / "ann.json").write_text(json.dumps(dict(content, categories=[])))
    with pytest.raises(ValueError, match=r"ann.json has no object categories .*image_labels='instances'"):
        build(root, image_labels="instances")
    with pytest.raises(ValueError, match=r"ann.json has no 'image_categories' list"):
        build(write_set(tmp_path / "b", image_categories=False), image_labels="json")
    with pytest.raises(ValueError, match=r"image_labels must be one of \('json', 'instances'\), got 'instance'"):
        build(write_set(tmp_path / "c"), image_labels="instance")
    reader = dict(type="ImageLabelTarget", image_labels="json")
    with pytest.raises(ValueError, match=r"dataset sets image_labels='instances' but its targets give ImageLabelTarget "
                                         r"image_labels='json'"):
        build(write_set(tmp_path / "d"), targets=dict(cls=reader), image_labels="instances")


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
    (bad_ann(bbox=[-5, 4, 10, 8]), "box outside the image"),
    (bad_ann(bbox=[6, 4, 0, 8]), "zero-area box"),
    (bad_ann(bbox=[6, 4, 10, -1]), "zero-area box"),
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
    assert "skipped 1 of 2 images" in caplog.text and message in caplog.text


@pytest.mark.parametrize("label", [5, -1, "1", None])
def test_bad_image_label_raises_or_is_skipped(tmp_path, label):
    images = [{"id": 1, "file_name": "a.png", "width": 32, "height": 32, "label": 1},
              {"id": 2, "file_name": "b.png", "width": 32, "height": 32, "label": label}]
    root = write_set(tmp_path, images=images)
    with pytest.raises(InvalidSampleError, match="bad image label: image id 2 .*ann.json"):
        build(root)
    assert build(root, skip_invalid=True).image_ids == [1]
    assert build(root, tasks=("seg", "det")).image_ids == [1, 2]  # the label only matters for cls


def test_missing_unreadable_and_wrong_size_images_raise_or_are_skipped_at_start_up(tmp_path, caplog):
    root = write_set(tmp_path)
    (root / "img" / "b.png").unlink()
    with pytest.raises(InvalidSampleError, match="image file not found.*b.png"):
        build(root)
    with caplog.at_level(logging.WARNING, logger="mtkd"):
        assert build(root, skip_invalid=True).image_ids == [1]
    (root / "img" / "b.png").write_bytes(b"not a png")
    with pytest.raises(InvalidSampleError, match="cannot read image.*b.png"):
        build(root)
    assert build(root, skip_invalid=True).image_ids == [1]
    Image.new("RGB", (40, 32)).save(root / "img" / "b.png")
    with pytest.raises(InvalidSampleError, match="image of the wrong size.*b.png is 40x32.*32x32"):
        build(root)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mtkd"):
        assert build(root, skip_invalid=True).image_ids == [1]
    assert "skipped 1 of 2 images (skip_invalid=True): {'image of the wrong size': 1}" in caplog.text
    (root / "img" / "a.png").unlink()
    with pytest.raises(ValueError, match="no usable images"):
        build(root, skip_invalid=True)


def test_truncated_image_is_an_error_naming_the_file_when_read(tmp_path):
    root = write_set(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(root / "img" / "a.png")
    data = (root / "img" / "a.png").read_bytes()
    (root / "img" / "a.png").write_bytes(data[:len(data) // 2])  # a valid header, half the pixels
    dataset = build(root)
    with pytest.raises(InvalidSampleError, match="cannot read image.*a.png"):
        dataset[0]


def write_masks(root, a_shape=(32, 32), a_value=2):
    (root / "masks").mkdir(exist_ok=True)
    mask = np.zeros(a_shape, np.uint8)
    mask[0:5, 0:7] = a_value
    mask[30:, 30:] = 255
    Image.fromarray(mask).save(root / "masks" / "a.png")
    Image.fromarray(np.ones((32, 32), np.uint8)).save(root / "masks" / "b.png")
    return mask


def test_mask_dir_pngs_are_the_seg_labels(tmp_path):
    root = write_set(tmp_path)
    mask = write_masks(root)
    dataset = build(root, targets=dict(seg=dict(type="SemanticMaskTarget", mask_dir="masks")))
    assert torch.equal(dataset[0]["seg"], torch.from_numpy(mask).long()) and (dataset[1]["seg"] == 1).all()
    assert dataset[0]["boxes"].tolist() == [[6, 4, 16, 12]]  # boxes still come from the json


def test_mask_dir_png_of_wrong_size_or_with_unknown_classes(tmp_path):
    root = write_set(tmp_path)
    write_masks(root, a_shape=(16, 16))
    with pytest.raises(InvalidSampleError, match="mask of the wrong size.*a.png is 16x16.*image id 1"):
        build(root, targets=dict(seg=dict(type="SemanticMaskTarget", mask_dir="masks")))
    assert build(root, targets=dict(seg=dict(type="SemanticMaskTarget", mask_dir="masks")), skip_invalid=True).image_ids == [2]
    write_masks(root, a_value=7)  # seg has 3 classes: 0..2, and 255
    with pytest.raises(InvalidSampleError, match=r"bad mask.*a.png holds values \[7\]"):
        build(root, targets=dict(seg=dict(type="SemanticMaskTarget", mask_dir="masks")))[0]


def test_invalid_and_missing_json(tmp_path):
    (tmp_path / "ann.json").write_text("{not json")
    with pytest.raises(ValueError, match="ann.json is not valid json"):
        build(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoMultiTaskDataset(tmp_path, "nope.json", "img")
    (tmp_path / "ann.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="no 'categories' list"):
        build(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["annotations"][0].pop("bbox"), r"annotations id 10 lacks \['bbox'\]"),
    (lambda c: c["annotations"][0].update(image_id=9), "annotation id 10 refers to image id 9"),
    (lambda c: c["images"][1].update(id=1), r"images ids \[1\] appear more than once"),
    (lambda c: c["image_categories"][1].update(id=5), "'image_categories' ids must be 0..1"),
])
def test_inconsistent_json_is_an_error_naming_the_entry(tmp_path, edit, message):
    root = write_set(tmp_path)
    content = json.loads((root / "ann.json").read_text())
    edit(content)
    (root / "ann.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        build(root)


def test_eval_pipeline_meta_maps_original_boxes_onto_input_boxes_exactly(tmp_path):
    root = write_set(tmp_path)
    pipeline = [dict(type="HorizontalFlip", p=1.0), dict(type="LongestMaxSize", max_size=48),
                dict(type="PadIfNeeded", min_height=64, min_width=64, position="center", fill_mask=255)]
    sample = build(root, pipeline=pipeline)[0]
    meta = sample["meta"]
    assert meta["flip"] is True and meta["img_size"] == (64, 64) and meta["ori_size"] == (32, 32)
    (sx, sy), (ox, oy) = meta["scale_factor"], meta["offset"]
    x0, y0, x1, y1 = 6, 4, 16, 12   # the square, mirrored in the 32 px wide original, then scaled and shifted
    expected = [(32 - x1) * sx + ox, y0 * sy + oy, (32 - x0) * sx + ox, y1 * sy + oy]
    assert sample["boxes"][0].tolist() == pytest.approx(expected, abs=1e-4)
    assert (sx, sy, ox, oy) == pytest.approx((1.5, 1.5, 8.0, 8.0))
    ys, xs = torch.nonzero(sample["seg"] == 1, as_tuple=True)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == pytest.approx(expected, abs=1)


# -- files that pass the start-up check but do not decode (issue #20) -------------------------------------
def truncate(path, keep=0.5):
    """Cut a PNG after its header: PIL still reads its size, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: max(64, int(len(data) * keep))])


def test_a_truncated_image_is_an_error_naming_it_or_a_counted_skip(tmp_path, caplog):
    root = write_set(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "img" / "a.png")
    truncate(root / "img" / "a.png")
    dataset = build(root)
    assert dataset.image_ids == [1, 2]   # its header is intact: the start-up check passes
    with pytest.raises(InvalidSampleError, match="cannot read image.*a.png"):
        dataset[0]
    skipping = build(root, skip_invalid=True)
    with caplog.at_level(logging.WARNING, logger="mtkd"):
        sample = skipping[0]
    assert sample["meta"]["image_id"] == 2 and skipping.read_failures == 1
    assert "skipping image id 1 at read time" in caplog.text and "1 skipped" in caplog.text


def test_training_with_loader_workers_reports_a_truncated_image_in_one_line(tmp_path, tiny_synthetic, capsys):
    import shutil

    from tests.test_trainer import run_train, tiny_config
    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic, data)
    bad = sorted((data / "images" / "train").glob("*.png"))[3]
    truncate(bad)
    config = tiny_config(tmp_path, "demo/student_scratch.py", data, "bad")
    assert run_train(config, tmp_path / "fails", "--cfg-options", "train_dataloader.num_workers=2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"error: cannot read image: {bad}: image file is truncated" or (
        err[0].startswith("error: cannot read image: ") and str(bad) in err[0]), err
    assert "skip_invalid=True" in err[1]
    assert run_train(config, tmp_path / "skips", "--cfg-options", "train_dataloader.num_workers=2",
                     "train_dataloader.dataset.skip_invalid=true") == 0
    assert "skipping image id" in (tmp_path / "skips" / "log.txt").read_text()
