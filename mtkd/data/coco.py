"""COCO-format multi-task dataset: an image plus the ground truth of every task its target readers find."""
from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO

from mtkd.data.io import InvalidSampleError, image_size, read_rgb
from mtkd.data.targets.base import TargetReader
from mtkd.data.transforms import Pipeline, sample_seed
from mtkd.registry import DATASETS, TARGETS

logger = logging.getLogger("mtkd")
ANN_KEYS = ("id", "image_id", "category_id", "bbox")
IMAGE_KEYS = ("id", "file_name", "width", "height")


def load_coco(ann_file: Path) -> COCO:
    """pycocotools COCO from a json file, with clear errors for a missing, invalid or inconsistent file."""
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    try:
        content = json.loads(ann_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"annotation file {ann_file} is not valid json: {err}") from err
    if not isinstance(content, dict):
        raise ValueError(f"annotation file {ann_file}: expected a json object, got {type(content).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            raise ValueError(f"annotation file {ann_file} has no {key!r} list (not COCO format)")
    for key, required in (("images", IMAGE_KEYS), ("annotations", ANN_KEYS), ("categories", ("id", "name"))):
        _check_entries(ann_file, key, content[key], required)
    image_ids = {img["id"] for img in content["images"]}
    for ann in content["annotations"]:
        if ann["image_id"] not in image_ids:
            raise ValueError(f"annotation file {ann_file}: annotation id {ann['id']} refers to image id "
                             f"{ann['image_id']}, which is not in 'images'")
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _check_entries(ann_file: Path, key: str, entries: list, required: Sequence[str]) -> None:
    """Every entry of ``content[key]`` is a dict with the ``required`` keys and a unique ``id``."""
    for position, entry in enumerate(entries):
        missing = [k for k in required if not isinstance(entry, dict) or k not in entry]
        if missing:
            name = f"id {entry['id']}" if isinstance(entry, dict) and "id" in entry else f"entry {position}"
            raise ValueError(f"annotation file {ann_file}: {key} {name} lacks {missing}")
    duplicates = [i for i, n in Counter(e["id"] for e in entries).items() if n > 1]
    if duplicates:
        raise ValueError(f"annotation file {ann_file}: {key} ids {sorted(duplicates)[:10]} appear more than once")


@DATASETS.register_module()
class CocoMultiTaskDataset(torch.utils.data.Dataset):
    """Samples ``{img, <each task's batch keys>, meta}`` from a COCO json (see ``mtkd.structures``).

    Which tasks it serves is decided by its target readers (``mtkd.data.targets``): every registered
    reader with ``auto = True`` whose ground truth the json holds (built in: semantic masks from the
    instance masks, boxes, ``images[i]["label"]`` with ``image_categories``, depth PNGs with
    ``depth_scale``), plus ``targets`` (``{task: reader cfg}``; a reader cfg replaces the one found for
    that task, ``None`` removes it); ``tasks`` keeps only those named, and one the data cannot provide
    is an error. A bad image or annotation is an error naming the file, or with ``skip_invalid=True``
    its image is skipped and counted: at start-up (headers, sizes, labels) and, for files that fail to
    decode (a truncated PNG), when read.

    ``image_labels`` goes to the readers that take it (``dataset_options``): the image-level classes from
    ``images[i]["label"]`` (``"json"``, the default when the json has ``image_categories``) or the multi-hot
    vector of the object categories in each image (``"instances"``: multi-label, one class per object
    category, crowd regions excluded). ``head_args`` holds what the data decides about a task's head beyond
    ``num_classes`` (``{task: {"multi_label": True}}``); the engine builds the heads with it.
    """

    def __init__(self, data_root: str, ann_file: str, img_dir: str, pipeline: Sequence[Mapping] = (),
                 tasks: Sequence[str] | None = None, targets: Mapping[str, Mapping | None] | None = None,
                 skip_invalid: bool = False, min_visibility: float = 0.3, image_labels: str | None = None):
        self.data_root = Path(data_root)
        self.ann_file, self.img_dir = (self.data_root / ann_file).resolve(), self.data_root / img_dir
        self.coco = load_coco(self.ann_file)
        self.label_to_cat_id = sorted(self.coco.getCatIds())
        self.cat_index = {cat_id: i for i, cat_id in enumerate(self.label_to_cat_id)}
        self.category_names = [self.coco.cats[c]["name"] for c in self.label_to_cat_id]
        self.readers = build_readers(self.coco.dataset, targets, tasks, self.ann_file,
                                     options=dict(image_labels=image_labels))
        for task, reader in self.readers.items():
            reader.setup(self, task)
        self.tasks = tuple(self.readers)
        self.class_names = {t: r.class_names for t, r in self.readers.items() if r.class_names is not None}
        self.num_classes = {t: len(names) for t, names in self.class_names.items()}
        self.head_args = {t: dict(r.head_args) for t, r in self.readers.items() if r.head_args}
        self.listed_keys = ("meta", *(k for r in self.readers.values() for k in r.listed_keys))
        self.needs_instances = any(r.needs_instances for r in self.readers.values())
        fills = {t: r.fill for t, r in self.readers.items() if r.fill is not None}
        self.pipeline = Pipeline(pipeline, min_visibility=min_visibility, dense_fills=fills)
        self.seed, self.epoch = 0, 0
        self.skip_invalid, self.read_failures = bool(skip_invalid), 0
        self.image_ids = self._valid_image_ids(skip_invalid)

    def set_epoch(self, epoch: int) -> None:
        """Augmentations are drawn per (seed, epoch, index): reproducible across workers and resumes."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.image_ids)

    # -- validation at start-up ---------------------------------------------------------------
    def _valid_image_ids(self, skip_invalid: bool) -> list[int]:
        kept, skipped = [], Counter()
        for image_id in sorted(self.coco.imgs):
            try:
                self._check_image(image_id)
                kept.append(image_id)
            except InvalidSampleError as err:
                if not skip_invalid:
                    raise
                skipped[str(err).split(":")[0]] += 1
                logger.warning(f"skipping image id {image_id}: {err}")
        if skipped:
            logger.warning(f"{self.ann_file}: skipped {sum(skipped.values())} of {len(self.coco.imgs)} images "
                           f"(skip_invalid=True): {dict(skipped)}")
        if not kept:
            raise ValueError(f"{self.ann_file}: no usable images (the json lists {len(self.coco.imgs)}, "
                             f"skipped {sum(skipped.values())})")
        return kept

    def _check_image(self, image_id: int) -> None:
        """Raise InvalidSampleError when the image, one of its annotations or a task's target is bad."""
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        path = self.img_dir / info["file_name"]
        actual = image_size(path)
        if actual != (height, width):
            raise InvalidSampleError(f"image of the wrong size: {path} is {actual[1]}x{actual[0]} but image id "
                                     f"{image_id} in {self.ann_file} says {width}x{height}")
        anns = self.coco.imgToAnns.get(image_id, [])
        for ann in anns:
            self._check_annotation(ann, info)
        for reader in self.readers.values():
            reader.check(info, anns)

    def _check_annotation(self, ann: dict, info: dict) -> None:
        where = f"annotation id {ann['id']} (image {info['file_name']}) in {self.ann_file}"
        if ann["category_id"] not in self.cat_index:
            raise InvalidSampleError(f"unknown category id: {ann['category_id']} in {where}; "
                                     f"categories are {self.label_to_cat_id}")
        if not self.needs_instances:
            return
        x, y, w, h = ann["bbox"]
        if w <= 0 or h <= 0:
            raise InvalidSampleError(f"zero-area box: {ann['bbox']} in {where}")
        width, height = info["width"], info["height"]
        if x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:  # 1 px of rounding is tolerated
            raise InvalidSampleError(f"box outside the image: {ann['bbox']} for a {width}x{height} image in {where}")

    # -- loading ------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        """The sample at ``index``; an image or target file that fails to decode is an InvalidSampleError
        naming it, or with ``skip_invalid`` a logged, counted skip to the next readable image."""
        for attempt in range(len(self.image_ids)):
            position = (index + attempt) % len(self.image_ids)
            try:
                return self._load(position, index)
            except (InvalidSampleError, OSError) as err:
                if not self.skip_invalid:
                    raise InvalidSampleError(str(err)) from err
                self.read_failures += 1
                logger.warning(f"skipping image id {self.image_ids[position]} at read time ({err}); "
                               f"{self.read_failures} skipped in this process (skip_invalid=True)")
        raise InvalidSampleError(f"{self.ann_file}: no image could be read (skip_invalid=True)")

    def _load(self, position: int, index: int) -> dict:
        """Read, transform and package image ``position``; augmentation seeded by the requested ``index``."""
        image_id = self.image_ids[position]
        info = self.coco.imgs[image_id]
        image = read_rgb(self.img_dir / info["file_name"])
        anns = self.coco.imgToAnns.get(image_id, [])
        objects = [a for a in anns if not a.get("iscrowd", 0)]
        raw = {task: reader.read(info, anns) for task, reader in self.readers.items()}
        out = self.pipeline(image, dense={t: r["dense"] for t, r in raw.items() if "dense" in r},
                            boxes=object_boxes(objects, info) if self.needs_instances else None,
                            keypoints={t: r["keypoints"] for t, r in raw.items() if "keypoints" in r},
                            seed=sample_seed(self.seed, self.epoch, index))
        sample = {"img": torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()}
        for reader in self.readers.values():
            sample.update(reader.to_sample(info, objects, out))
        sample["meta"] = {"image_id": image_id, "file_name": info["file_name"], "ori_size": image.shape[:2],
                          "img_size": tuple(out["image"].shape[:2]), "scale_factor": out["scale_factor"],
                          "offset": out["offset"], "flip": out["flip"], "vflip": out["vflip"]}
        return sample

    def read_dense(self, task: str, image_id: int) -> np.ndarray:
        """Task ``task``'s dense ground truth of an image at its original resolution (for metrics)."""
        if task not in self.readers:
            raise KeyError(f"{self.ann_file}: no task {task!r} in this dataset (tasks: {list(self.tasks)})")
        info = self.coco.imgs[image_id]
        raw = self.readers[task].read(info, self.coco.imgToAnns.get(image_id, []))
        if "dense" not in raw:
            raise ValueError(f"task {task!r} of {self.ann_file} has no dense ground truth "
                             f"({type(self.readers[task]).__name__})")
        return raw["dense"]


def object_boxes(objects: list[dict], info: dict) -> np.ndarray:
    """xyxy ``[N, 4]`` boxes of annotations (COCO ``bbox`` is xywh), clipped to the image."""
    boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in objects], np.float32).reshape(-1, 4)
    return np.clip(boxes, 0, [info["width"], info["height"], info["width"], info["height"]])


def build_readers(content: Mapping, targets: Mapping[str, Mapping | None] | None, tasks: Sequence[str] | None,
                  ann_file: Path, options: Mapping[str, Any] | None = None) -> dict[str, TargetReader]:
    """``{task: reader}``: discovered readers updated by ``targets``, restricted to ``tasks`` (in that order).

    ``options`` (the dataset's own arguments; None = not set) go to the readers whose ``dataset_options``
    name them; an ``auto`` reader that takes a set option is found even where ``available`` says no.
    """
    options = {key: value for key, value in (options or {}).items() if value is not None}
    cfgs: dict[str, dict | None] = {
        cls.task: dict(type=name) for name, cls in TARGETS.items() if getattr(cls, "auto", False)
        and (cls.available(content) or any(key in options for key in getattr(cls, "dataset_options", ())))}
    for task, cfg in (targets or {}).items():
        cfgs[task] = None if cfg is None else dict(cfg)
    provided = [task for task, cfg in cfgs.items() if cfg is not None]
    if tasks is not None:
        missing = [task for task in tasks if task not in provided]
        if missing:
            raise ValueError(f"{ann_file}: the config asks for tasks {missing}, which this dataset cannot provide "
                             f"(it provides {provided}){_requirements(missing)}")
        provided = list(tasks)
    readers = {task: TARGETS.build(_with_options(cfgs[task], options, ann_file)) for task in provided}
    keys = Counter(key for reader in readers.values() for key in reader.batch_keys)
    clash = sorted(key for key, n in keys.items() if n > 1)
    if clash:
        raise ValueError(f"{ann_file}: target readers of tasks {provided} share batch keys {clash}")
    return readers


def _with_options(cfg: dict, options: Mapping[str, Any], ann_file: Path) -> dict:
    """A reader cfg with the dataset options its class declares; a reader cfg that sets one otherwise is an
    error naming both values."""
    reader = cfg.get("type")
    if isinstance(reader, str):
        reader = TARGETS.get(reader) if reader in TARGETS else None   # unknown: TARGETS.build says so
    cfg = dict(cfg)
    for key in (k for k in getattr(reader, "dataset_options", ()) if k in options):
        if cfg.setdefault(key, options[key]) != options[key]:
            raise ValueError(f"{ann_file}: the dataset sets {key}={options[key]!r} but its targets give "
                             f"{cfg['type']} {key}={cfg[key]!r}; set it in one place")
    return cfg


def _requirements(tasks: Sequence[str]) -> str:
    """``; '<task>' needs ...`` for every task a known reader serves, to say what the json lacks."""
    known = {cls.task: cls.requirement for _, cls in TARGETS.items() if getattr(cls, "task", "")}
    notes = [f"{task!r} needs {known[task]}" for task in tasks if known.get(task)]
    return ("; " + "; ".join(notes)) if notes else ""
