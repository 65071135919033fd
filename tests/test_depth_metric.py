"""DepthMetric against a numpy reference: per-image AbsRel / RMSE / delta1 at the original resolution,
predictions mapped back through letterboxing and flips, unknown pixels left out, DDP sums."""
import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtkd.data import CocoMultiTaskDataset
from mtkd.data.transforms import Pipeline
from mtkd.evaluation import DepthMetric
from mtkd.registry import METRICS


class DenseData:
    """A dataset stand-in: ``read_dense("depth", image_id)`` returns the stored float ``[H, W]`` metres."""

    def __init__(self, maps):
        self.maps = maps

    def read_dense(self, task, image_id):
        assert task == "depth"
        return self.maps[image_id]


# -- the numpy reference ------------------------------------------------------------------------------
def sample_bilinear(image, xs, ys):
    """``image [h, w]`` at continuous input coordinates (pixel i spans [i, i + 1]), edges clamped."""
    h, w = image.shape
    px, py = np.clip(xs - 0.5, 0, w - 1), np.clip(ys - 0.5, 0, h - 1)
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    wx, wy = px - x0, py - y0
    top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
    bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def to_original(pred, meta):
    """Each original pixel centre, mirrored when flipped, mapped by ``input = original * scale + offset``."""
    height, width = meta["ori_size"]
    xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5
    if meta.get("flip"):
        xs = width - xs
    if meta.get("vflip"):
        ys = height - ys
    (sx, sy), (ox, oy) = meta["scale_factor"], meta["offset"]
    gx, gy = np.meshgrid(xs * sx + ox, ys * sy + oy)
    return sample_bilinear(np.asarray(pred, np.float64), gx, gy)


def reference(preds, gts, min_depth=1e-3, max_depth=None):
    """NYUv2 definitions per image over valid pixels, then the mean over images that have one."""
    rows = []
    for p, g in zip(preds, gts):
        p = np.clip(p, min_depth, max_depth if max_depth is not None else np.inf)
        valid = (g > 0) & (g <= (max_depth if max_depth is not None else np.inf))
        if not valid.any():
            continue
        p, g = p[valid], g[valid].astype(np.float64)
        rows.append([np.mean(np.abs(p - g) / g), np.sqrt(np.mean((p - g) ** 2)),
                     100 * np.mean(np.maximum(p / g, g / p) < 1.25)])
    means = np.mean(rows, axis=0)
    return {"depth/AbsRel": means[0], "depth/RMSE": means[1], "depth/delta1": means[2]}, len(rows)


def identity_meta(image_id, height, width):
    return {"image_id": image_id, "ori_size": (height, width), "img_size": (height, width),
            "scale_factor": (1.0, 1.0), "offset": (0.0, 0.0), "flip": False, "vflip": False}


def random_images(count=5, height=12, width=10, seed=0):
    """Ground truth 0.5..8 m with unknown pixels (image 2 wholly unknown), predictions near it, some < 1e-3."""
    rng = np.random.default_rng(seed)
    gts, preds = {}, {}
    for image_id in range(count):
        gt = rng.uniform(0.5, 8.0, (height, width)).astype(np.float32)
        gt[rng.uniform(size=gt.shape) < 0.25] = 0.0
        if image_id == 2:
            gt[:] = 0.0
        gts[image_id] = gt
        preds[image_id] = (gt + rng.normal(0, 1.0, gt.shape)).astype(np.float32)
        preds[image_id][0, 0] = 0.0          # clamped to min_depth
    return gts, preds


def feed(metric, gts, preds, batch_size=2):
    ids = sorted(gts)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        pred = torch.from_numpy(np.stack([preds[i] for i in chunk]))
        metas = [identity_meta(i, *gts[i].shape) for i in chunk]
        metric.update(pred, {"meta": metas, "depth": torch.from_numpy(np.stack([gts[i] for i in chunk]))})


# -- tests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_depth", [None, 5.0])
def test_matches_numpy_reference_with_unknown_pixels(max_depth):
    gts, preds = random_images()
    metric = METRICS.build(dict(type="DepthMetric", max_depth=max_depth), task="depth", dataset=DenseData(gts))
    feed(metric, gts, preds)
    expected, images = reference([preds[i] for i in sorted(gts)], [gts[i] for i in sorted(gts)], max_depth=max_depth)
    result = metric.compute()
    assert list(result) == ["depth/AbsRel", "depth/RMSE", "depth/delta1"] and images == 4
    assert result == pytest.approx(expected, rel=1e-9)
    assert metric.primary == "depth/delta1" and "over 4 images" in metric.summary()


def test_perfect_predictions_then_reset():
    gts, _ = random_images(count=2)
    metric = DepthMetric(dataset=DenseData(gts))
    feed(metric, gts, gts)
    assert metric.compute() == pytest.approx({"depth/AbsRel": 0.0, "depth/RMSE": 0.0, "depth/delta1": 100.0}, abs=1e-9)
    metric.reset()
    assert metric.compute() == {"depth/AbsRel": 0.0, "depth/RMSE": 0.0, "depth/delta1": 0.0}
    assert "over 0 images" in metric.summary()


def letterbox_flip(gt):
    """The input of a letterboxed, mirrored evaluation pipeline and its meta (image id 0)."""
    steps = [dict(type="LongestMaxSize", max_size=48), dict(type="PadIfNeeded", min_height=48, min_width=48,
             position="center", fill_mask=0), dict(type="HorizontalFlip", p=1.0)]
    image = np.zeros((*gt.shape, 3), np.uint8)
    out = Pipeline(steps, dense_fills={"depth": 0.0})(image, dense={"depth": gt}, seed=0)
    meta = {"image_id": 0, "ori_size": gt.shape, "img_size": out["image"].shape[:2],
            **{k: out[k] for k in ("scale_factor", "offset", "flip", "vflip")}}
    return out["dense"]["depth"], meta


def test_letterboxed_and_flipped_predictions_are_mapped_back_to_the_original():
    ys, xs = np.mgrid[0:20, 0:30]
    plane = (2.0 + 0.2 * xs + 0.05 * ys).astype(np.float32)   # 20 x 30: left near, right far
    moved, meta = letterbox_flip(plane)
    gt = plane.copy()
    gt[3:6, 4:9] = 0.0                                          # unknown pixels of the ground truth
    assert moved.shape == (48, 48) and meta["flip"] and meta["offset"][1] > 0 and meta["scale_factor"][0] == 1.6
    pred = np.where(moved > 0, moved, 100.0).astype(np.float32)   # padding: far off, must not be sampled
    metric = DepthMetric(dataset=DenseData({0: gt}))
    metric.update(torch.from_numpy(pred)[None], {"meta": [meta]})
    result = metric.compute()
    assert result["depth/delta1"] == 100.0 and result["depth/AbsRel"] < 0.03   # only the nearest-resize steps
    assert result == pytest.approx(reference([to_original(pred, meta)], [gt])[0], rel=1e-6)
    unflipped = DepthMetric(dataset=DenseData({0: gt}))
    unflipped.update(torch.from_numpy(pred)[None], {"meta": [{**meta, "flip": False}]})
    assert unflipped.compute()["depth/AbsRel"] > 10 * result["depth/AbsRel"]   # the mirror matters


def test_random_predictions_through_letterbox_match_the_reference():
    rng = np.random.default_rng(3)
    gt = rng.uniform(1.0, 6.0, (20, 30)).astype(np.float32)
    gt[rng.uniform(size=gt.shape) < 0.3] = 0.0
    _, meta = letterbox_flip(gt)
    pred = rng.uniform(0.5, 7.0, (48, 48)).astype(np.float32)
    metric = DepthMetric(dataset=DenseData({0: gt}))
    metric.update([torch.from_numpy(pred)], {"meta": [meta]})
    assert metric.compute() == pytest.approx(reference([to_original(pred, meta)], [gt])[0], rel=1e-5)


def test_reads_the_ground_truth_of_a_coco_dataset_at_the_original_resolution(tiny_synthetic):
    dataset = CocoMultiTaskDataset(tiny_synthetic, "annotations/instances_val.json", "images/val",
                                   pipeline=[dict(type="HorizontalFlip", p=1.0)])
    metric = METRICS.build(dict(type="DepthMetric"), task="depth", dataset=dataset)
    samples = [dataset[i] for i in range(3)]
    assert all(s["meta"]["flip"] for s in samples)
    metric.update(torch.stack([s["depth"] for s in samples]), {"meta": [s["meta"] for s in samples]})
    assert metric.compute() == pytest.approx({"depth/AbsRel": 0.0, "depth/RMSE": 0.0, "depth/delta1": 100.0}, abs=1e-9)
    metric.reset()
    metric.update(torch.stack([s["depth"].flip(-1) for s in samples]), {"meta": [s["meta"] for s in samples]})
    assert metric.compute()["depth/delta1"] < 100.0


def test_errors_name_what_is_needed():
    with pytest.raises(ValueError, match=r"needs a dataset with read_dense\(task, image_id\).*list has none"):
        DepthMetric(dataset=[])
    with pytest.raises(ValueError, match="0 < min_depth < max_depth, got min_depth=1.0, max_depth=0.5"):
        DepthMetric(dataset=DenseData({}), min_depth=1.0, max_depth=0.5)
    metric = DepthMetric(dataset=DenseData({0: np.ones((4, 4), np.float32)}))
    with pytest.raises(ValueError, match="'meta' with one dict per prediction"):
        metric.update(torch.ones(1, 4, 4), {"depth": torch.ones(1, 4, 4)})
    with pytest.raises(ValueError, match=r"image id 0 is \(4, 4\), but its meta says ori_size \(5, 4\)"):
        metric.update(torch.ones(1, 5, 4), {"meta": [identity_meta(0, 5, 4)]})


# -- DDP: two gloo processes with half the images each equal one process ------------------------------
def ddp_worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    gts, preds = random_images()
    mine = {i: gts[i] for i in sorted(gts)[rank::2]}
    metric = DepthMetric(dataset=DenseData(gts))
    feed(metric, mine, preds)
    (out_dir / f"rank{rank}.json").write_text(json.dumps([metric.compute(), metric.summary()]))
    dist.destroy_process_group()


def test_two_processes_each_with_half_the_images_equal_one_process(tmp_path):
    mp.spawn(ddp_worker, args=(tmp_path / "init", tmp_path), nprocs=2, join=True)
    gts, preds = random_images()
    metric = DepthMetric(dataset=DenseData(gts))
    feed(metric, gts, preds)
    expected = metric.compute()
    for rank in (0, 1):
        result, summary = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result == pytest.approx(expected, rel=1e-12) and "over 4 images" in summary
