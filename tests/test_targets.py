"""The depth target reader end to end on generated data: metres from 16-bit PNGs, 0 = unknown through the
pipeline, and bad depth files as errors that name the file or as counted skips."""
import json
import logging
import shutil

import cv2
import numpy as np
import pytest
import torch

from mtkd.data import CocoMultiTaskDataset
from mtkd.data.io import InvalidSampleError
from mtkd.data.targets import DepthTarget


@pytest.fixture
def synthetic_copy(tiny_synthetic, tmp_path):
    """A private copy of the session's tiny synthetic set (train split only), free to damage."""
    root = tmp_path / "data"
    for sub in ("images/train", "depth/train"):
        shutil.copytree(tiny_synthetic / sub, root / sub)
    (root / "annotations").mkdir()
    shutil.copy(tiny_synthetic / "annotations" / "instances_train.json", root / "annotations")
    return root


def build(root, **kwargs):
    return CocoMultiTaskDataset(root, "annotations/instances_train.json", "images/train", **kwargs)


def edit_json(root, **changes):
    path = root / "annotations" / "instances_train.json"
    content = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            content.pop(key)
        else:
            content[key] = value
    path.write_text(json.dumps(content))


def test_depth_is_png_units_times_depth_scale(synthetic_copy):
    dataset = build(synthetic_copy, tasks=("depth",))
    png = cv2.imread(str(synthetic_copy / "depth" / "train" / "train_000004.png"), cv2.IMREAD_UNCHANGED)
    sample = dataset[4]
    assert set(sample) == {"img", "depth", "meta"} and sample["depth"].dtype == torch.float32
    assert torch.allclose(sample["depth"], torch.from_numpy(png.astype(np.float64) * 0.001).float())
    assert np.array_equal(dataset.read_dense("depth", sample["meta"]["image_id"]), sample["depth"].numpy())
    edit_json(synthetic_copy, depth_scale=0.002)   # the json's scale is the one applied
    assert torch.allclose(build(synthetic_copy, tasks=("depth",))[4]["depth"], 2 * sample["depth"])


def test_padding_is_unknown_and_flips_move_the_depth_with_the_image(synthetic_copy):
    plain = build(synthetic_copy, tasks=("depth",))[0]["depth"]
    steps = [dict(type="PadIfNeeded", min_height=80, min_width=64, position="top_left", fill_mask=7),
             dict(type="HorizontalFlip", p=1.0)]
    moved = build(synthetic_copy, tasks=("depth",), pipeline=steps)[0]["depth"]
    assert moved.shape == (80, 64) and (moved[64:] == 0).all()
    assert torch.equal(moved[:64], plain.flip(-1))


def test_explicit_reader_config_replaces_the_json_keys(synthetic_copy):
    shutil.move(synthetic_copy / "depth" / "train", synthetic_copy / "elsewhere")
    edit_json(synthetic_copy, depth_dir=None, depth_scale=None)
    with pytest.raises(ValueError, match=r"asks for tasks \['depth'\].*'depth' needs a top-level 'depth_scale'"):
        build(synthetic_copy, tasks=("depth",))
    reader = dict(type="DepthTarget", depth_dir="elsewhere", depth_scale=0.001)
    dataset = build(synthetic_copy, targets=dict(depth=reader))
    assert dataset.tasks[-1] == "depth" and float(dataset[0]["depth"].max()) > 5.0


def test_bad_depth_scale_is_an_error_naming_the_file(synthetic_copy):
    edit_json(synthetic_copy, depth_scale=-1)
    with pytest.raises(ValueError, match=r"instances_train.json: depth_scale must be a positive number .* got -1"):
        build(synthetic_copy)


def damage(root, name, array):
    assert cv2.imwrite(str(root / "depth" / "train" / name), array)


@pytest.mark.parametrize("array, message", [
    (np.ones((32, 64), np.uint16), r"depth map of the wrong size: \S*train_000003.png is 64x32, image id 4 .* 64x64"),
    (np.ones((64, 64), np.uint8), r"bad depth map: \S*train_000003.png has mode L, expected a 16-bit"),
    (np.ones((64, 64, 3), np.uint8), r"bad depth map: \S*train_000003.png has mode RGB, expected a 16-bit"),
    (None, r"depth map file not found: \S*train_000003.png"),
], ids=["wrong-size", "8-bit", "rgb", "missing"])
def test_a_bad_depth_map_names_the_file_or_is_skipped_and_counted(synthetic_copy, caplog, array, message):
    if array is None:
        (synthetic_copy / "depth" / "train" / "train_000003.png").unlink()
    else:
        damage(synthetic_copy, "train_000003.png", array)
    with pytest.raises(InvalidSampleError, match=message):
        build(synthetic_copy)
    with caplog.at_level(logging.WARNING, logger="mtkd"):
        dataset = build(synthetic_copy, skip_invalid=True)
    assert len(dataset) == 15 and 4 not in dataset.image_ids
    assert "skipped 1 of 16 images" in caplog.text and "train_000003.png" in caplog.text


def test_a_depth_map_that_does_not_decode_is_an_error_naming_the_file(synthetic_copy):
    dataset = build(synthetic_copy, tasks=("depth",))
    path = synthetic_copy / "depth" / "train" / "train_000000.png"
    data = path.read_bytes()
    path.write_bytes(data[:40])          # the header still says 64x64 16-bit, the pixels are gone
    with pytest.raises(InvalidSampleError, match=r"bad depth map: \S*train_000000.png cannot be decoded"):
        dataset[0]


def test_reader_declares_its_task_contract():
    assert DepthTarget.task == "depth" and DepthTarget.batch_keys == ("depth",) and DepthTarget.fill == 0.0
    assert DepthTarget.available({"depth_scale": 0.001, "depth_dir": "d"})
    assert not DepthTarget.available({"depth_scale": 0.001})
