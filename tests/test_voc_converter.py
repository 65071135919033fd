"""tools/dataset_converters/voc.py on VOC trees the tests write, and configs/_base_/datasets/voc.py reading them.

``write_voc_tree`` also makes a larger VOC-like tree for a real training run (objects of a class share a
colour and a shape, so a detector and a segmenter can learn them)::

    .venv/bin/python -c "from tests.test_voc_converter import write_voc_tree as w; print(w('/tmp/voc_like',
        (600, 150), sizes=((128, 96), (96, 128), (112, 112), (128, 128), (120, 104)), seed=0))"
    .venv/bin/python tools/dataset_converters/voc.py /tmp/voc_like --out /tmp/voc_conv
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtkd.cli import run_tool
from mtkd.config import Config
from mtkd.data import CocoMultiTaskDataset, build_dataset
from mtkd.engine.utils import set_data_root
from tools.dataset_converters import voc

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "dataset_converters" / "voc.py"
PALETTE = np.array(voc.voc_palette(), np.float64).reshape(256, 3)


# -- writing VOC trees -------------------------------------------------------------------------------------
def write_voc_image(root, stem, image, mask, objects, xml_size=None):
    """``JPEGImages/<stem>.jpg``, ``SegmentationClass/<stem>.png`` (palette) and ``Annotations/<stem>.xml``
    with ``objects`` ``[(name, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)]``."""
    root = Path(root)
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
    png = Image.fromarray(mask)
    png.putpalette(voc.voc_palette())
    png.save(root / "SegmentationClass" / f"{stem}.png")
    height, width = xml_size or mask.shape
    parts = [f"<annotation><folder>VOC2012</folder><filename>{stem}.jpg</filename><size><width>{width}</width>"
             f"<height>{height}</height><depth>3</depth></size><segmented>1</segmented>"]
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>"
                     f"{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                     f"<ymax>{ymax}</ymax></bndbox></object>")
    (root / "Annotations" / f"{stem}.xml").write_text("".join(parts) + "</annotation>\n")


def render_voc_scene(rng, width, height):
    """An RGB ``uint8 [H, W, 3]`` image, its class mask (255 rings around objects) and 1-3 visible objects
    ``[(name, 1-based box, difficult)]``: class k an ellipse (k even) or a rectangle (k odd) in VOC colour k."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = rng.uniform(70, 190, 3) + rng.normal(0, 8, (height, width, 3)) + (xx / width * 30)[..., None]
    instance, classes = np.zeros((height, width), np.int64), []
    for k in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, len(voc.CLASSES) + 1))
        bw = int(rng.integers(max(4, width // 6), width // 2 + 1))
        bh = int(rng.integers(max(4, height // 6), height // 2 + 1))
        x0, y0 = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
        region = (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
        if cls % 2 == 0:
            region &= ((xx - x0 - (bw - 1) / 2) / (bw / 2)) ** 2 + ((yy - y0 - (bh - 1) / 2) / (bh / 2)) ** 2 <= 1
        image[region] = PALETTE[cls] * 0.8 + 30 + rng.normal(0, 10, (int(region.sum()), 3))
        instance[region], classes = k + 1, classes + [cls]
    mask, objects = np.zeros((height, width), np.uint8), []
    for k, cls in enumerate(classes):
        visible = instance == k + 1
        if visible.sum() < 6:
            continue
        mask[visible] = cls
        rows, cols = np.nonzero(visible)
        difficult = int(visible.sum() < 0.02 * width * height or rng.random() < 0.06)  # small: hard to see
        box = (cols.min() + 1, rows.min() + 1, cols.max() + 1, rows.max() + 1)  # 1-based inclusive, as VOC
        objects.append((voc.CLASSES[cls - 1], box, difficult))
    ring = np.zeros_like(mask, bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):  # background pixels 4-adjacent to an object: void
        ring |= np.roll(mask > 0, (dy, dx), (0, 1))
    mask[ring & (mask == 0)] = voc.VOID
    return np.clip(image, 0, 255).astype(np.uint8), mask, objects


def write_voc_tree(root, n_images=(3, 2), sizes=((40, 30), (50, 36)), seed=0):
    """A VOC 2012-style tree: ``n_images`` (train, val) scenes of a size (W, H) drawn from ``sizes``, listed in
    ``ImageSets/Segmentation/{train,val}.txt``; returns ``{split: {"images", "objects", "difficult"}}``."""
    rng, root, counts = np.random.default_rng(seed), Path(root), {}
    for year, (split, count) in enumerate(zip(("train", "val"), n_images)):
        stems, objects = [f"{2010 + year}_{i:06d}" for i in range(count)], []
        for stem in stems:
            width, height = sizes[int(rng.integers(len(sizes)))]
            image, mask, found = render_voc_scene(rng, width, height)
            write_voc_image(root, stem, image, mask, found)
            objects += found
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
        counts[split] = {"images": count, "objects": len(objects), "difficult": sum(o[2] for o in objects)}
    return counts


def write_hand_tree(root):
    """One 40x30 train image with boxes worked out by hand (see test_boxes_categories_and_crowd_by_hand)."""
    mask = np.zeros((30, 40), np.uint8)
    mask[6:20, 4:14] = 15           # person: rows 7..20, cols 5..14 (1-based)
    mask[5, 4:14] = voc.VOID
    mask[2, 20] = 20                # tvmonitor: one pixel at (21, 3) 1-based
    image = np.full((30, 40, 3), 100, np.uint8)
    objects = [("aeroplane", (1, 1, 40, 30), 0), ("person", (5, 7, 14, 20), 1), ("tvmonitor", (21, 3, 21, 3), 0)]
    write_voc_image(root, "2007_000001", image, mask, objects)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n")
    return mask


def convert(root, out, *extra):
    return run_tool(voc.main, [str(root), "--out", str(out), "--no-progress", *map(str, extra)])


def load(out, split="train"):
    return json.loads((Path(out) / "annotations" / f"instances_{split}.json").read_text())


@pytest.fixture
def tree(tmp_path):
    counts = write_voc_tree(tmp_path / "VOC2012", seed=5)  # seed 5: a difficult object in each split
    return tmp_path / "VOC2012", counts


# -- conversion --------------------------------------------------------------------------------------------
def test_boxes_categories_and_crowd_by_hand(tmp_path, capsys):
    mask = write_hand_tree(tmp_path / "voc")
    assert convert(tmp_path / "voc", tmp_path / "out", "--splits", "train") == 0
    data = load(tmp_path / "out")
    assert [c["name"] for c in data["categories"]] == list(voc.CLASSES)
    assert voc.CLASSES[:3] == ("aeroplane", "bicycle", "bird") and voc.CLASSES[-1] == "tvmonitor"
    assert [c["id"] for c in data["categories"]] == list(range(1, 21))
    assert data["images"] == [{"id": 1, "file_name": "2007_000001.jpg", "height": 30, "width": 40}]
    # 1-based inclusive (xmin, ymin, xmax, ymax) -> [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]
    expected = [(1, [0, 0, 40, 30], 1200, 0), (15, [4, 6, 10, 14], 140, 1), (20, [20, 2, 1, 1], 1, 0)]
    assert [(a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in data["annotations"]] == expected
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3] and {a["image_id"] for a in data["annotations"]} == {1}
    assert all("segmentation" not in a for a in data["annotations"])
    written = Image.open(tmp_path / "out" / "masks" / "train" / "2007_000001.png")
    assert written.mode == "P" and np.array_equal(np.array(written), mask)
    assert "train: 1 images, 3 objects (1 difficult, iscrowd=1), 0 skipped" in capsys.readouterr().out


def test_a_generated_tree_converts_with_masks_and_images_byte_exact(tree, tmp_path, capsys):
    root, counts = tree
    assert convert(root, tmp_path / "out") == 0
    printed = capsys.readouterr().out
    for split, numbers in counts.items():
        data, stems = load(tmp_path / "out", split), (root / f"ImageSets/Segmentation/{split}.txt").read_text().split()
        assert [img["file_name"] for img in data["images"]] == [f"{s}.jpg" for s in stems]
        assert len(data["annotations"]) == numbers["objects"]
        assert sum(a["iscrowd"] for a in data["annotations"]) == numbers["difficult"]
        line = f"{numbers['images']} images, {numbers['objects']} objects ({numbers['difficult']} difficult"
        assert f"{split:>5}: {line}" in printed
        for img in data["images"]:
            stem = Path(img["file_name"]).stem
            source = np.array(Image.open(root / "SegmentationClass" / f"{stem}.png"))
            written = np.array(Image.open(tmp_path / "out" / "masks" / split / f"{stem}.png"))
            assert np.array_equal(written, source) and written.shape == (img["height"], img["width"])
            assert (root / "JPEGImages" / img["file_name"]).read_bytes() == \
                (tmp_path / "out" / "images" / split / img["file_name"]).read_bytes()
    masks = [np.array(Image.open(p)) for p in (tmp_path / "out" / "masks").rglob("*.png")]
    assert voc.VOID in np.concatenate([m.ravel() for m in masks])  # void borders kept as 255
    assert all(numbers["difficult"] >= 1 for numbers in counts.values())


@pytest.mark.parametrize("link", ["hard", "sym"])
def test_link_instead_of_copy(tree, tmp_path, link):
    root, _ = tree
    assert convert(root, tmp_path / "out", "--link", link) == 0
    name = load(tmp_path / "out")["images"][0]["file_name"]
    placed, source = tmp_path / "out" / "images" / "train" / name, root / "JPEGImages" / name
    assert placed.is_symlink() == (link == "sym") and os.path.samefile(placed, source)


def test_command_line_in_a_subprocess(tree, tmp_path):
    root, counts = tree
    result = subprocess.run([sys.executable, str(TOOL), str(root), "--out", str(tmp_path / "out")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"train: {counts['train']['images']} images" in result.stdout and "wrote" in result.stdout
    assert len(load(tmp_path / "out", "val")["images"]) == counts["val"]["images"]


# -- bad input -----------------------------------------------------------------------------------------------
def _missing_image(root, stem):
    path = root / "JPEGImages" / f"{stem}.jpg"
    path.unlink()
    return path


def _unknown_class(root, stem):
    path = root / "Annotations" / f"{stem}.xml"
    text = path.read_text()
    name = text.split("<name>")[1].split("</name>")[0]
    path.write_text(text.replace(f"<name>{name}</name>", "<name>aeroplne</name>", 1))
    return path


def _mask_of_wrong_size(root, stem):
    path = root / "SegmentationClass" / f"{stem}.png"
    mask = np.array(Image.open(path))
    Image.fromarray(np.pad(mask, ((0, 0), (0, 1)))).save(path)
    return path


def _missing_mask(root, stem):
    path = root / "SegmentationClass" / f"{stem}.png"
    path.unlink()
    return path


def _malformed_xml(root, stem):
    path = root / "Annotations" / f"{stem}.xml"
    path.write_text(path.read_text()[:40])
    return path


def _mask_with_unknown_value(root, stem):
    path = root / "SegmentationClass" / f"{stem}.png"
    mask = np.array(Image.open(path))
    mask[0, 0] = 30
    Image.fromarray(mask).save(path)
    return path


def _box_outside(root, stem):
    path = root / "Annotations" / f"{stem}.xml"
    text = path.read_text()
    xmax = text.split("<xmax>")[1].split("</xmax>")[0]
    path.write_text(text.replace(f"<xmax>{xmax}</xmax>", "<xmax>500</xmax>", 1))
    return path


BAD = {"missing image": _missing_image, "unknown class": _unknown_class, "mask of the wrong size": _mask_of_wrong_size,
       "missing mask": _missing_mask, "malformed annotation": _malformed_xml, "bad mask": _mask_with_unknown_value,
       "bad box": _box_outside}


@pytest.mark.parametrize("reason", list(BAD))
def test_bad_input_is_an_error_naming_the_file_or_a_counted_skip(tree, tmp_path, capsys, reason):
    root, counts = tree
    stem = next(s for s in (root / "ImageSets/Segmentation/train.txt").read_text().split()
                if "<object>" in (root / "Annotations" / f"{s}.xml").read_text())
    path = BAD[reason](root, stem)
    assert convert(root, tmp_path / "out") == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {reason}: ") and str(path) in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    if reason == "unknown class":
        assert "'aeroplne'" in captured.err and "did you mean 'aeroplane'" in captured.err

    assert convert(root, tmp_path / "out", "--skip-invalid") == 0
    captured = capsys.readouterr()
    assert f"train: {counts['train']['images'] - 1} images" in captured.out
    assert f"1 skipped ({reason}: 1)" in captured.out and str(path) in captured.err
    assert stem not in {Path(img["file_name"]).stem for img in load(tmp_path / "out")["images"]}
    assert len(load(tmp_path / "out", "val")["images"]) == counts["val"]["images"]


def test_a_missing_split_list_names_it_and_suggests_the_nested_folder(tree, tmp_path, capsys):
    root, _ = tree
    assert convert(root.parent, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "split list not found" in err and str(root) in err


# -- the dataset config --------------------------------------------------------------------------------------
def voc_config(out):
    cfg = Config.fromfile(REPO / "configs/_base_/datasets/voc.py")
    set_data_root(cfg, str(out))
    return cfg


def check_dataset(dataset, out, split):
    """Boxes, classes and masks of the converted tree as the dataset serves them."""
    assert {"seg", "det"} <= set(dataset.tasks)
    assert dataset.class_names["seg"] == ["background", *voc.CLASSES] and dataset.num_classes["det"] == 20
    data = load(out, split)
    image_id = dataset.image_ids[0]
    info = dataset.coco.imgs[image_id]
    mask = np.array(Image.open(Path(out) / "masks" / split / f"{Path(info['file_name']).stem}.png"))
    assert np.array_equal(dataset.read_dense("seg", image_id), mask)
    sample = dataset[0]
    assert sample["img"].shape == (3, 512, 512)
    assert set(np.unique(sample["seg"].numpy())) <= set(np.unique(mask)) | {voc.VOID}
    objects = [a for a in data["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
    assert sorted(sample["labels"].tolist()) == sorted(a["category_id"] - 1 for a in objects)
    return sample


def test_the_config_reads_the_converted_tree_without_image_labels(tree, tmp_path):
    """Everything but ``image_labels`` (another change adds it to CocoMultiTaskDataset): runs today."""
    root, _ = tree
    assert convert(root, tmp_path / "out") == 0
    cfg = voc_config(tmp_path / "out")
    assert cfg.test_dataloader.dataset.ann_file == "annotations/instances_val.json"  # VOC test labels: not public
    for loader, split in (("train_dataloader", "train"), ("test_dataloader", "val")):
        dataset_cfg = cfg[loader].dataset.to_dict()
        assert dataset_cfg.pop("image_labels") == "instances"
        check_dataset(build_dataset(dataset_cfg), tmp_path / "out", split)


@pytest.mark.skipif("image_labels" not in inspect.signature(CocoMultiTaskDataset).parameters,
                    reason="CocoMultiTaskDataset has no image_labels option yet")
def test_the_config_builds_the_dataset_with_image_labels(tree, tmp_path):
    root, _ = tree
    assert convert(root, tmp_path / "out") == 0
    dataset = build_dataset(voc_config(tmp_path / "out").val_dataloader.dataset.to_dict())
    check_dataset(dataset, tmp_path / "out", "val")
    image_tasks = [t for t in dataset.tasks if t not in ("seg", "det")]
    assert image_tasks and all(dataset.class_names[t] == list(voc.CLASSES) for t in image_tasks)


@pytest.mark.parametrize("name", ["teacher_r50-fpn.py", "teacher_r18-fpn_tiny-128px.py"])
def test_voc_training_configs_have_known_keys_and_no_depth_head(name):
    from mtkd.engine.config_keys import check_config_keys

    cfg = Config.fromfile(REPO / "configs" / "voc" / name)
    check_config_keys(cfg)
    assert cfg.model.heads.get("depth") is None and {"seg", "det", "cls"} <= set(cfg.model.heads)
    assert cfg.train_dataloader.dataset.targets.seg.mask_dir == "masks/train"
