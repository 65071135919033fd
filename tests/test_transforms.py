import numpy as np
import pytest

from mtkd.data.transforms import Pipeline, build_transform, sample_seed
from mtkd.registry import TRANSFORMS


def scene():
    """A 48x64 image with two rectangles: their masks (1, 2) and boxes."""
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[5:20, 8:30] = 1
    mask[25:45, 35:60] = 2
    boxes = np.array([[8, 5, 30, 20], [35, 25, 60, 45]], np.float32)
    return image, mask, boxes, np.array([0, 1])


def mask_box(mask, value):
    ys, xs = np.nonzero(mask == value)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("steps", [
    [dict(type="HorizontalFlip", p=1.0)],
    [dict(type="VerticalFlip", p=1.0)],
    [dict(type="Crop", x_min=4, y_min=2, x_max=60, y_max=46)],
    [dict(type="Affine", scale=1.3, translate_px=3, keep_ratio=True, p=1.0, fill_mask=0)],
    [dict(type="LongestMaxSize", max_size=96), dict(type="PadIfNeeded", min_height=96, min_width=96, fill_mask=0)],
])
def test_geometric_transforms_keep_boxes_on_their_objects(steps):
    image, mask, boxes, labels = scene()
    out = Pipeline(steps)(image, mask, boxes, labels, seed=1)
    assert len(out["boxes"]) == 2
    for box, label in zip(out["boxes"], out["labels"]):
        assert box == pytest.approx(mask_box(out["mask"], label + 1), abs=1.01)


@pytest.mark.parametrize("steps, expected", [
    ([dict(type="LongestMaxSize", max_size=128),
      dict(type="PadIfNeeded", min_height=128, min_width=128, position="center", fill_mask=255)],
     dict(scale=(2.0, 2.0), offset=(0.0, 16.0), flip=False, vflip=False)),
    ([dict(type="HorizontalFlip", p=1.0), dict(type="Resize", height=96, width=128)],
     dict(scale=(2.0, 2.0), offset=(0.0, 0.0), flip=True, vflip=False)),
    ([dict(type="VerticalFlip", p=1.0), dict(type="CenterCrop", height=40, width=60)],
     dict(scale=(1.0, 1.0), offset=(-2.0, -4.0), flip=False, vflip=True)),
])
def test_scale_and_offset_map_original_boxes_to_input_boxes_exactly(steps, expected):
    image, mask, boxes, labels = scene()
    out = Pipeline(steps)(image, mask, boxes, labels)
    (sx, sy), (ox, oy) = out["scale_factor"], out["offset"]
    assert (sx, sy, ox, oy) == pytest.approx((*expected["scale"], *expected["offset"]))
    assert (out["flip"], out["vflip"]) == (expected["flip"], expected["vflip"])
    height, width = image.shape[:2]
    mirrored = boxes.copy()
    if out["flip"]:
        mirrored[:, [0, 2]] = width - boxes[:, [2, 0]]
    if out["vflip"]:
        mirrored[:, [1, 3]] = height - boxes[:, [3, 1]]
    mapped = mirrored * [sx, sy, sx, sy] + [ox, oy, ox, oy]
    in_h, in_w = out["image"].shape[:2]
    assert out["boxes"] == pytest.approx(mapped.clip(0, [in_w, in_h, in_w, in_h]), abs=1e-4)


def test_same_seed_same_augmentation_other_seed_other():
    image, mask, boxes, labels = scene()
    pipe = Pipeline([dict(type="Affine", scale=(0.5, 1.5), rotate=(-30, 30), p=1.0), dict(type="Normalize")])
    a = pipe(image, mask, boxes, labels, seed=sample_seed(0, 0, 5))["image"]
    b = pipe(image, mask, boxes, labels, seed=sample_seed(0, 0, 5))["image"]
    other_epoch = pipe(image, mask, boxes, labels, seed=sample_seed(0, 1, 5))["image"]
    other_index = pipe(image, mask, boxes, labels, seed=sample_seed(0, 0, 6))["image"]
    other_seed = pipe(image, mask, boxes, labels, seed=sample_seed(1, 0, 5))["image"]
    assert np.array_equal(a, b)
    assert not any(np.array_equal(a, c) for c in (other_epoch, other_index, other_seed))
    assert len({sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(3)}) == 27


def test_registry_holds_albumentations_and_nested_compositions_build():
    assert {"HorizontalFlip", "Resize", "Normalize", "OneOf"} <= set(TRANSFORMS.keys())
    one_of = build_transform(dict(type="OneOf", transforms=[dict(type="HorizontalFlip"), dict(type="VerticalFlip")]))
    assert len(one_of.transforms) == 2
    with pytest.raises(KeyError, match="HorizontallFlip"):
        build_transform(dict(type="HorizontallFlip"))


def test_normalization_reads_the_pipeline():
    mean, std = Pipeline([dict(type="Normalize", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))]).normalization()
    assert mean == (0.5, 0.5, 0.5) and std == (0.25, 0.25, 0.25)
