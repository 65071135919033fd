"""COCO-format multi-task dataset: boxes (det), a semantic mask (seg) and an image-level class (cls)."""
from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO

from mtkd.data.transforms import Pipeline, sample_seed
from mtkd.registry import DATASETS
from mtkd.structures import IGNORE_INDEX

logger = logging.getLogger("mtkd")
ANN_KEYS = ("id", "image_id", "category_id", "bbox")
IMAGE_KEYS = ("id", "file_name", "width", "height")


class InvalidSampleError(ValueError):
    """A sample that cannot be read as labelled; the message starts with the reason, then names the file."""


def read_rgb(path: Path) -> np.ndarray:
    """Image file -> RGB ``uint8 [H, W, 3]``; grayscale, palette and RGBA are converted."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise InvalidSampleError(f"image file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise InvalidSampleError(f"cannot read image: {path}: {err}") from err


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header only (cheap enough to check every image at start-up)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError:
        raise InvalidSampleError(f"image file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise InvalidSampleError(f"cannot read image: {path}: {err}") from err
    return height, width


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


def image_class_names(ann_file: Path, image_categories: list) -> list[str]:
    """Names of the image-level classes, indexed by ``images[i]["label"]``; ids must be 0..K-1."""
    ids = sorted(c.get("id", -1) for c in image_categories)
    if ids != list(range(len(ids))):
        raise ValueError(f"annotation file {ann_file}: 'image_categories' ids must be 0..{len(ids) - 1} "
                         f"(the values of images[i]['label']), got {ids}")
    return [c["name"] for c in sorted(image_categories, key=lambda c: c["id"])]


@DATASETS.register_module()
class CocoMultiTaskDataset(torch.utils.data.Dataset):
    """Samples ``{img, seg, boxes, labels, cls, meta}`` from a COCO json (see ``mtkd.structures``).

    The semantic mask is painted from instance masks in annotation order (category k -> k + 1, 0 background,
    crowd regions 255) or read from ``mask_dir/<image stem>.png``; ``cls`` is ``images[i]["label"]`` when the
    json lists ``image_categories``. ``tasks`` restricts the labels produced. A bad image or annotation is an
    error naming the file and annotation id, or with ``skip_invalid=True`` its image is skipped and counted.
    """

    def __init__(self, data_root: str, ann_file: str, img_dir: str, pipeline: Sequence[Mapping] = (),
                 tasks: Sequence[str] | None = None, mask_dir: str | None = None, skip_invalid: bool = False,
                 min_visibility: float = 0.3):
        root = Path(data_root)
        self.ann_file, self.img_dir = (root / ann_file).resolve(), root / img_dir
        self.mask_dir = root / mask_dir if mask_dir else None
        self.coco = load_coco(self.ann_file)
        self.label_to_cat_id = sorted(self.coco.getCatIds())
        self._cat_index = {cat_id: i for i, cat_id in enumerate(self.label_to_cat_id)}
        self._set_tasks(tasks)
        self.pipeline = Pipeline(pipeline, min_visibility=min_visibility)
        self.seed, self.epoch = 0, 0
        self.image_ids = self._valid_image_ids(skip_invalid)

    def _set_tasks(self, tasks: Sequence[str] | None) -> None:
        """``tasks``, ``num_classes`` and ``class_names`` from the json (``cls`` only with image labels)."""
        names = [self.coco.cats[c]["name"] for c in self.label_to_cat_id]
        class_names = {"seg": ["background", *names], "det": names}
        image_categories = self.coco.dataset.get("image_categories")
        if image_categories:
            class_names["cls"] = image_class_names(self.ann_file, image_categories)
        unknown = [t for t in tasks or () if t not in class_names]
        if unknown:
            raise ValueError(f"{self.ann_file}: tasks {unknown} are not available in this dataset "
                             f"({list(class_names)}; 'cls' needs a top-level 'image_categories' list)")
        self.tasks = tuple(tasks or class_names)
        self.class_names = {t: class_names[t] for t in self.tasks}
        self.num_classes = {t: len(class_names[t]) for t in self.tasks}

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
        """Raise InvalidSampleError when the image, its size, its label or one of its annotations is bad."""
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        path = self.img_dir / info["file_name"]
        actual = image_size(path)
        if actual != (height, width):
            raise InvalidSampleError(f"image of the wrong size: {path} is {actual[1]}x{actual[0]} but image id "
                                     f"{image_id} in {self.ann_file} says {width}x{height}")
        label = info.get("label")
        if "cls" in self.tasks and (type(label) is not int or not 0 <= label < self.num_classes["cls"]):
            raise InvalidSampleError(f"bad image label: image id {image_id} in {self.ann_file} has label "
                                     f"{label!r}, expected an int in 0..{self.num_classes['cls'] - 1}")
        for ann in self.coco.imgToAnns.get(image_id, []):
            self._check_annotation(ann, info)
        if self.mask_dir is not None and "seg" in self.tasks:
            mask_path = self._mask_path(info)
            actual = image_size(mask_path)
            if actual != (height, width):
                raise InvalidSampleError(f"mask of the wrong size: {mask_path} is {actual[1]}x{actual[0]}, "
                                         f"image id {image_id} in {self.ann_file} is {width}x{height}")

    def _check_annotation(self, ann: dict, info: dict) -> None:
        where = f"annotation id {ann['id']} (image {info['file_name']}) in {self.ann_file}"
        height, width = info["height"], info["width"]
        if ann["category_id"] not in self._cat_index:
            raise InvalidSampleError(f"unknown category id: {ann['category_id']} in {where}; "
                                     f"categories are {self.label_to_cat_id}")
        x, y, w, h = ann["bbox"]
        if w <= 0 or h <= 0:
            raise InvalidSampleError(f"zero-area box: {ann['bbox']} in {where}")
        if x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:  # 1 px of rounding is tolerated
            raise InvalidSampleError(f"box outside the image: {ann['bbox']} for a {width}x{height} image in {where}")
        seg = ann.get("segmentation")
        if isinstance(seg, dict) and [int(v) for v in seg.get("size", [])] != [height, width]:
            raise InvalidSampleError(f"mask of the wrong size: {seg.get('size')} for a {height}x{width} "
                                     f"image in {where}")

    # -- loading ------------------------------------------------------------------------------
    def _mask_path(self, info: dict) -> Path:
        return self.mask_dir / (Path(info["file_name"]).stem + ".png")

    def _semantic_mask(self, info: dict, anns: list[dict]) -> np.ndarray:
        """``uint8 [H, W]``: later annotations paint over earlier ones, as drawn."""
        if self.mask_dir is not None:
            return self._read_mask(self._mask_path(info))
        mask = np.zeros((info["height"], info["width"]), np.uint8)
        for ann in anns:
            if ann.get("segmentation"):
                index = IGNORE_INDEX if ann.get("iscrowd", 0) else self._cat_index[ann["category_id"]] + 1
                mask[self.coco.annToMask(ann).astype(bool)] = index
        return mask

    def _read_mask(self, path: Path) -> np.ndarray:
        """A PNG of class indices (0 background, 255 ignore); other values are an error, not a wrong loss."""
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise InvalidSampleError(f"bad mask: {path} has mode {img.mode}, expected a single-channel "
                                         f"(L or P) PNG of class indices")
            mask = np.array(img, np.uint8)
        bad = np.setdiff1d(np.unique(mask), [*range(self.num_classes["seg"]), IGNORE_INDEX])
        if bad.size:
            raise InvalidSampleError(f"bad mask: {path} holds values {bad.tolist()[:10]}, expected 0.."
                                     f"{self.num_classes['seg'] - 1} or {IGNORE_INDEX}")
        return mask

    def _targets(self, info: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Boxes xyxy ``[N, 4]`` and labels ``[N]`` (crowd excluded), and the semantic mask or None."""
        anns = self.coco.imgToAnns.get(info["id"], [])
        objects = [a for a in anns if not a.get("iscrowd", 0)]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in objects], np.float32).reshape(-1, 4)
        boxes = np.clip(boxes, 0, [info["width"], info["height"], info["width"], info["height"]])
        labels = np.array([self._cat_index[a["category_id"]] for a in objects], np.int64)
        mask = self._semantic_mask(info, anns) if "seg" in self.tasks else None
        return boxes, labels, mask

    def __getitem__(self, index: int) -> dict:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        image = read_rgb(self.img_dir / info["file_name"])
        boxes, labels, mask = self._targets(info)
        out = self.pipeline(image, mask, boxes, labels, seed=sample_seed(self.seed, self.epoch, index))
        sample = {"img": torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()}
        if "seg" in self.tasks:
            sample["seg"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
        if "det" in self.tasks:
            sample["boxes"], sample["labels"] = torch.from_numpy(out["boxes"]), torch.from_numpy(out["labels"])
        if "cls" in self.tasks:
            sample["cls"] = torch.tensor(info["label"], dtype=torch.long)
        sample["meta"] = {"image_id": image_id, "file_name": info["file_name"], "ori_size": image.shape[:2],
                          "img_size": tuple(out["image"].shape[:2]), "scale_factor": out["scale_factor"],
                          "offset": out["offset"], "flip": out["flip"], "vflip": out["vflip"]}
        return sample
