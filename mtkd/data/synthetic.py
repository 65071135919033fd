"""The embedded default data: a deterministic synthetic multi-task scene set written in COCO format.

Each image holds 1-6 shapes (8 classes) in random colours, sizes and rotations over a textured, noisy
background; later shapes occlude earlier ones and the annotations describe only what stays visible.
The image-level label is the class covering the largest visible area, which needs global reasoning
(counting and comparing areas across the scene), so classification relates to the dense tasks.
Each image also has a depth map (a tilted background plane, every shape flat at its own depth, later
shapes nearer, a 1-pixel sensor shadow of unknown depth around them), drawn from a second RNG so that the
images and json of version 1 stay byte-identical.
Every image draws from its own RNGs seeded by (seed, split, index): same seed, byte-identical files.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon", "crescent")
SPLITS = ("train", "val", "test")
MIN_VISIBLE_FRACTION = 0.35  # an object keeps at least this share of its pixels visible
SYNTHETIC_VERSION = 2        # 1: images + json; 2: + depth maps (tools regenerate older sets)
DEPTH_SCALE = 0.001          # metres per unit of the 16-bit depth PNGs
DEPTH_STREAM = 1             # 4th seed entry of the depth RNG: never draws from the scene RNG
BACKGROUND_FAR = (8.5, 10.0)     # m, background depth at the top row
BACKGROUND_NEAR = (6.0, 7.5)     # m, at the bottom row (a ground plane seen from above the horizon)
BACKGROUND_TILT = 0.5            # m, at most this change from the left to the right edge
OBJECT_DEPTH_K = 0.3             # m: a shape of radius r * size sits near OBJECT_DEPTH_K / r metres
OBJECT_DEPTH_MAX = 5.5           # m, nearer than any background pixel (all >= 6.0 - BACKGROUND_TILT / 2)
OBJECT_DEPTH_STEP = 0.9          # each shape at most this fraction of the depth of the one drawn before


def _polygon(kind: str, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Unit-free outline points of a polygonal shape (centred at 0), randomly rotated: ``[K, 2]``."""
    if kind == "square":
        angles = np.deg2rad([45, 135, 225, 315])
        pts = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
    elif kind == "triangle":
        angles = np.deg2rad([90, 210, 330])
        pts = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
    elif kind == "hexagon":
        angles = np.deg2rad(np.arange(6) * 60)
        pts = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
    elif kind == "star":
        angles = np.deg2rad(np.arange(10) * 36 + 90)
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
        pts = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    elif kind == "cross":
        a, b = radius, radius * 0.33
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b],
                        [-a, b], [-a, -b], [-b, -b]], dtype=np.float64)
    else:
        raise ValueError(kind)
    theta = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return pts @ rot.T


def draw_shape_mask(kind: str, center: tuple[float, float], radius: float, size: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Binary mask ``[size, size]`` (uint8 0/1) of one shape."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = center
    shift = 4  # sub-pixel precision for cv2 drawing
    scale = 1 << shift
    if kind in ("circle", "ring", "crescent"):
        c = (int(round(cx * scale)), int(round(cy * scale)))
        cv2.circle(mask, c, int(round(radius * scale)), 1, -1, cv2.LINE_8, shift)
        if kind == "ring":
            cv2.circle(mask, c, int(round(radius * 0.55 * scale)), 0, -1, cv2.LINE_8, shift)
        elif kind == "crescent":
            theta = rng.uniform(0, 2 * math.pi)
            off = (int(round((cx + math.cos(theta) * radius * 0.5) * scale)),
                   int(round((cy + math.sin(theta) * radius * 0.5) * scale)))
            cv2.circle(mask, off, int(round(radius * 0.85 * scale)), 0, -1, cv2.LINE_8, shift)
        return mask
    pts = _polygon(kind, rng, radius) + np.array([cx, cy])
    cv2.fillPoly(mask, [np.round(pts * scale).astype(np.int32)], 1, cv2.LINE_8, shift)
    return mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field + stripes + pixel noise: ``[size, size, 3]`` float32 in 0..255."""
    grid = rng.uniform(40, 215, (4, 4, 3)).astype(np.float32)
    field = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, freq = rng.uniform(0, math.pi), rng.uniform(0.15, 0.6)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * freq)[..., None]
    field += stripes * rng.uniform(5, 30, 3).astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):  # distractors: elongated ellipses, never a shape class
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        major = int(rng.integers(max(4, size // 16), max(5, size // 6)))
        axes = (major, max(1, int(major * rng.uniform(0.15, 0.4))))
        cv2.ellipse(field, c, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(v) for v in rng.uniform(30, 225, 3)), -1)
    return field + rng.normal(0, 12, (size, size, 3)).astype(np.float32)


def render_scene(seed_seq: list[int], size: int) -> tuple[np.ndarray, list[dict], int]:
    """One scene: uint8 BGR image, visible objects ``[{class_id, mask, radius}]`` (drawing order; ``radius``
    in pixels, as drawn), image label."""
    rng = np.random.default_rng(seed_seq)
    image = _background(rng, size)
    masks: list[np.ndarray] = []
    classes: list[int] = []
    radii: list[float] = []
    for _ in range(int(rng.integers(1, 7))):
        for _attempt in range(20):
            kind = int(rng.integers(len(SHAPES)))
            radius = rng.uniform(0.07, 0.22) * size
            center = tuple(rng.uniform(radius * 0.6, size - radius * 0.6, 2))
            mask = draw_shape_mask(SHAPES[kind], center, radius, size, rng)
            if mask.sum() >= 30 and all(_keeps_visible(m, mask) for m in masks):
                break
        else:
            continue
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        texture = rng.normal(0, rng.uniform(4, 20), (size, size, 1)).astype(np.float32)
        sel = mask.astype(bool)
        image[sel] = (colour + texture)[sel]
        masks = [m & (1 - mask) for m in masks] + [mask]
        classes.append(kind)
        radii.append(float(radius))
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    objects = [{"class_id": c, "mask": m, "radius": r} for c, m, r in zip(classes, masks, radii) if m.sum() > 0]
    areas = np.zeros(len(SHAPES), np.int64)
    for obj in objects:
        areas[obj["class_id"]] += int(obj["mask"].sum())
    return image, objects, int(areas.argmax())


def _keeps_visible(existing: np.ndarray, new: np.ndarray) -> bool:
    """Would ``existing`` keep enough of itself visible if ``new`` were drawn on top?"""
    area = existing.sum()
    return area == 0 or (existing & (1 - new)).sum() >= MIN_VISIBLE_FRACTION * area


def render_depth(objects: list[dict], size: int, rng: np.random.Generator) -> np.ndarray:
    """Depth in metres ``[size, size]`` float64 of a scene's visible ``objects`` (drawing order), 0 = unknown.

    The background is a tilted plane (6-10 m); each shape is flat, near ``OBJECT_DEPTH_K / (radius / size)``
    (bigger looks nearer) and nearer than the shape drawn before it and than the background, so depth agrees
    with the occlusions of the image. The sensor shadow: the 1-pixel ring (8-neighbours) just outside each
    visible object is unknown (0) wherever the surface there is farther than the object. Values lie on the
    ``DEPTH_SCALE`` grid, so shapes read back at exactly one depth.
    """
    depth = _background_depth(rng, size)
    object_depths = _object_depths(objects, size, rng)
    for obj, value in zip(objects, object_depths):
        depth[obj["mask"].astype(bool)] = value
    shadow = np.zeros((size, size), bool)
    kernel = np.ones((3, 3), np.uint8)
    for obj, value in zip(objects, object_depths):
        ring = cv2.dilate(obj["mask"], kernel).astype(bool) & ~obj["mask"].astype(bool)
        shadow |= ring & (depth > value)
    depth[shadow] = 0.0
    return depth


def _background_depth(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plane ``[size, size]`` in metres: far at the top, near at the bottom, tilted left to right."""
    far, near = rng.uniform(*BACKGROUND_FAR), rng.uniform(*BACKGROUND_NEAR)
    tilt = rng.uniform(-BACKGROUND_TILT, BACKGROUND_TILT)
    t = (np.arange(size) + 0.5) / size  # pixel centres in (0, 1)
    plane = far + (near - far) * t[:, None] + tilt * (t[None, :] - 0.5)
    return np.round(plane / DEPTH_SCALE) * DEPTH_SCALE


def _object_depths(objects: list[dict], size: int, rng: np.random.Generator) -> list[float]:
    """One depth (metres, on the PNG grid) per visible object, strictly decreasing in drawing order."""
    depths, limit = [], OBJECT_DEPTH_MAX
    for obj in objects:
        nominal = OBJECT_DEPTH_K * size / obj["radius"] * rng.uniform(0.9, 1.1)
        value = round(min(nominal, limit) / DEPTH_SCALE) * DEPTH_SCALE
        depths.append(value)
        limit = value * OBJECT_DEPTH_STEP
    return depths


def _annotations(objects: list[dict], image_id: int, next_ann_id: int) -> list[dict]:
    anns = []
    for k, obj in enumerate(objects):
        rle = mask_utils.encode(np.asfortranarray(obj["mask"]))
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        anns.append({"id": next_ann_id + k, "image_id": image_id, "category_id": obj["class_id"] + 1,
                     "bbox": [x, y, w, h], "area": float(mask_utils.area(rle)), "iscrowd": 0,
                     "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}})
    return anns


def _make_one(args: tuple) -> tuple[str, list[dict], int]:
    """Render and write image ``index`` of ``split`` and its depth map; return file name, anns, label."""
    out_dir, split, index, size, seed = args
    seed_seq = [seed, SPLITS.index(split), index]
    image, objects, label = render_scene(seed_seq, size)
    depth = render_depth(objects, size, np.random.default_rng([*seed_seq, DEPTH_STREAM]))
    name = f"{split}_{index:06d}.png"
    cv2.imwrite(str(Path(out_dir) / "images" / split / name), image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    units = np.round(depth / DEPTH_SCALE).astype(np.uint16)
    cv2.imwrite(str(Path(out_dir) / "depth" / split / name), units, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    return name, _annotations(objects, index + 1, 0), label


def make_synthetic_dataset(out_dir: str | Path, num_train: int = 2000, num_val: int = 500, num_test: int = 500,
                           size: int = 128, seed: int = 0, workers: int = 2, progress: bool = True) -> dict:
    """Write ``images/{split}/*.png``, ``depth/{split}/*.png`` (16-bit, ``DEPTH_SCALE`` m per unit) and
    ``annotations/instances_{split}.json``; return counts per split."""
    out_dir = Path(out_dir)
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}")
    summary = {}
    for split, count in zip(SPLITS, (num_train, num_val, num_test)):
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "depth" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
        jobs = [(str(out_dir), split, i, size, seed) for i in range(count)]
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(tqdm(pool.map(_make_one, jobs, chunksize=32), total=count, desc=f"synthetic {split}",
                                disable=not progress, leave=False))
        coco = _coco_json(results, split, size)
        text = json.dumps(coco, sort_keys=True, separators=(",", ":"))
        (out_dir / "annotations" / f"instances_{split}.json").write_text(text)
        summary[split] = {"images": count, "objects": len(coco["annotations"])}
    return summary


def _coco_json(results: list[tuple], split: str, size: int) -> dict:
    images, annotations = [], []
    for index, (name, anns, label) in enumerate(results):
        images.append({"id": index + 1, "file_name": name, "width": size, "height": size, "label": label})
        for ann in anns:
            annotations.append({**ann, "id": len(annotations) + 1})
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPES)]
    image_categories = [{"id": i, "name": n} for i, n in enumerate(SHAPES)]
    return {"info": {"description": f"mtkd synthetic shapes, {split} split", "version": SYNTHETIC_VERSION},
            "images": images, "annotations": annotations, "categories": categories,
            "image_categories": image_categories, "depth_dir": f"depth/{split}", "depth_scale": DEPTH_SCALE}


def synthetic_version(root: str | Path) -> int | None:
    """The generator version of the set at ``root``: its test json's ``info.version`` (1 when absent, None
    when there is no set there). A set whose version is not ``SYNTHETIC_VERSION`` lacks some ground truth."""
    path = Path(root) / "annotations" / "instances_test.json"
    if not path.is_file():
        return None
    try:
        return int((json.loads(path.read_text()).get("info") or {}).get("version", 1))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError):
        return None
