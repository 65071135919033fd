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


def run(steps, image, mask, boxes, seed=None, fill=255):
    """The pipeline over image + a label map ``seg`` + boxes (labels come back through ``box_ids``)."""
    out = Pipeline(steps, dense_fills={"seg": fill})(image, dense={"seg": mask}, boxes=boxes, seed=seed)
    return {**out, "mask": out["dense"]["seg"], "labels": out["box_ids"]}


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
    out = run(steps, image, mask, boxes, seed=1)
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
    out = run(steps, image, mask, boxes)
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
    a = pipe(image, boxes=boxes, seed=sample_seed(0, 0, 5))["image"]
    b = pipe(image, boxes=boxes, seed=sample_seed(0, 0, 5))["image"]
    other_epoch = pipe(image, boxes=boxes, seed=sample_seed(0, 1, 5))["image"]
    other_index = pipe(image, boxes=boxes, seed=sample_seed(0, 0, 6))["image"]
    other_seed = pipe(image, boxes=boxes, seed=sample_seed(1, 0, 5))["image"]
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


# -- every target kind stays exact through flips and resizes ------------------------------------------
FLIP_RESIZE = [
    ([dict(type="HorizontalFlip", p=1.0)], lambda a: a[:, ::-1]),
    ([dict(type="VerticalFlip", p=1.0)], lambda a: a[::-1]),
    ([dict(type="Resize", height=96, width=128)], lambda a: a.repeat(2, axis=0).repeat(2, axis=1)),
    ([dict(type="HorizontalFlip", p=1.0), dict(type="Resize", height=24, width=32)], lambda a: a[::2, ::-2]),
]


def dense_maps():
    rng = np.random.default_rng(3)
    return {"labels": rng.integers(0, 9, (48, 64)).astype(np.uint8),            # integer label map
            "depth": rng.uniform(0.5, 9.0, (48, 64)).astype(np.float32),        # float map
            "normals": rng.normal(size=(48, 64, 3)).astype(np.float32)}        # multi-channel float map


@pytest.mark.parametrize("steps, expected", FLIP_RESIZE)
def test_dense_targets_of_every_kind_follow_flips_and_resizes_exactly(steps, expected):
    image = scene()[0]
    maps = dense_maps()
    out = Pipeline(steps, dense_fills={"labels": 255, "depth": 0, "normals": 0})(image, dense=maps)
    for name, value in maps.items():
        assert out["dense"][name].dtype == value.dtype, name
        assert np.array_equal(out["dense"][name], expected(value)), name


@pytest.mark.parametrize("steps, expected", FLIP_RESIZE)
def test_boxes_and_keypoints_follow_flips_and_resizes_exactly(steps, expected):
    """Boxes and points land where the pixels under them land (compared with a label map of 2x2 blocks)."""
    image, _, _, _ = scene()
    corners = np.array([[10, 6], [50, 30], [2, 44]])          # 2x2 pixel blocks at even positions
    points, boxes = corners + 1.0, np.concatenate([corners, corners + 2], axis=1).astype(np.float32)
    marks = np.zeros((48, 64), np.uint8)
    for k, (x, y) in enumerate(corners):
        marks[y:y + 2, x:x + 2] = k + 1
    out = Pipeline(steps, min_area=0.0, dense_fills={"marks": 0})(image, dense={"marks": marks}, boxes=boxes,
                                                                 keypoints={"points": points})
    moved = expected(marks)
    for k in range(len(points)):
        ys, xs = np.nonzero(moved == k + 1)
        centre = [(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2]   # of the moved pixel block
        assert out["keypoints"]["points"][k] == pytest.approx(centre)
        box = out["boxes"][list(out["box_ids"]).index(k)]
        assert box == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_each_dense_target_gets_its_own_fill_whatever_fill_mask_says():
    image = scene()[0]
    maps = dense_maps()
    steps = [dict(type="PadIfNeeded", min_height=64, min_width=80, position="top_left", fill_mask=7)]
    out = Pipeline(steps, dense_fills={"labels": 255, "depth": 0, "normals": -1})(image, dense=maps)
    for name, fill in (("labels", 255), ("depth", 0), ("normals", -1)):
        got = out["dense"][name]
        assert np.array_equal(got[:48, :64], maps[name]), name
        assert (got[48:] == fill).all() and (got[:, 64:] == fill).all(), name
    rotated = Pipeline([dict(type="Affine", rotate=30, p=1.0, fill_mask=0)], dense_fills={"depth": 0})(
        image, dense={"depth": maps["depth"]}, seed=0)["dense"]["depth"]
    assert (rotated[0, 0] == 0) and (rotated > 0).mean() > 0.5   # corners rotated in from outside: unknown


def test_dense_targets_need_nearest_interpolation_and_declared_names():
    with pytest.raises(ValueError, match="Resize has mask_interpolation=1.*nearest"):
        Pipeline([dict(type="Resize", height=8, width=8, mask_interpolation=1)], dense_fills={"depth": 0})
    Pipeline([dict(type="Resize", height=8, width=8, mask_interpolation=1)])  # fine without dense targets
    with pytest.raises(KeyError, match=r"dense targets \['depth'\] were not declared"):
        Pipeline([])(scene()[0], dense={"depth": dense_maps()["depth"]})
    with pytest.raises(ValueError, match="reserved"):
        Pipeline([], dense_fills={"mask": 0})
