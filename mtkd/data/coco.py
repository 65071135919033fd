"""COCO-format multi-task dataset: boxes (det), a semantic mask (seg) and an image-level class (cls)."""
from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mtkd.data.transforms import Pipeline, sample_seed
from mtkd.registry import DATASETS
from mtkd.structures import IGNORE_INDEX

logger = logging.getLogger("mtkd")


class InvalidSampleError(ValueError):
    """A sample that cannot be read as labelled; the message names the file and annotation."""


def read_rgb(path: Path) -> np.ndarray:
    """Image file -> RGB ``uint8 [H, W, 3]``; grayscale, palette and RGBA are converted."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise InvalidSampleError(f"image file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise InvalidSampleError(f"cannot read image {path}: {err}") from err


def load_coco(ann_file: Path) -> COCO:
    """pycocotools COCO from a json file, with a clear error for a missing or invalid file."""
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    try:
        content = json.loads(ann_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"annotation file {ann_file} is not valid json: {err}") from err
    for key in ("images", "annotations", "categories"):
        if key not in content:
            raise ValueError(f"annotation file {ann_file} has no {key!r} list (not COCO format)")
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@DATASETS.register_module()
class CocoMultiTaskDataset(torch.utils.data.Dataset):
    """Samples ``{img, seg, boxes, labels, cls, meta}`` from a COCO json (see ``mtkd.structures``).

    The semantic mask is painted from instance masks in annotation order (class k -> k + 1, 0 background,
    crowd regions 255) or read from PNGs in ``mask_dir``; ``cls`` is ``images[i]["label"]`` when the json
    lists ``image_categories``. ``tasks`` restricts which labels are produced. A bad annotation is an error
    naming the file and annotation id, or with ``skip_invalid=True`` its image is skipped and counted.
    """

    def __init__(self, data_root: str, ann_file: str, img_dir: str, pipeline: Sequence[Mapping] = (),
                 tasks: Sequence[str] | None = None, mask_dir: str | None = None, skip_invalid: bool = False,
                 min_visibility: float = 0.3):
        root = Path(data_root)
        self.ann_file, self.img_dir = (root / ann_file).resolve(), root / img_dir
        self.mask_dir = root / mask_dir if mask_dir else None
        self.coco = load_coco(self.ann_file)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_to_cat_id = list(self.cat_ids)
        self._cat_index = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        image_cats = self.coco.dataset.get("image_categories")
        available = ["seg", "det"] + (["cls"] if image_cats else [])
        unknown = [t for t in tasks or () if t not in available]
        if unknown:
            raise ValueError(f"{self.ann_file}: tasks {unknown} are not available in this dataset ({available})")
        self.tasks = tuple(tasks or available)
        names = [self.coco.cats[c]["name"] for c in self.cat_ids]
        self.class_names = {"seg": ["background", *names], "det": names}
        self.num_classes = {"seg": len(names) + 1, "det": len(names)}
        if image_cats:
            self.class_names["cls"] = [c["name"] for c in sorted(image_cats, key=lambda c: c["id"])]
            self.num_classes["cls"] = len(image_cats)
        self.class_names = {t: v for t, v in self.class_names.items() if t in self.tasks}
        self.num_classes = {t: v for t, v in self.num_classes.items() if t in self.tasks}
        self.pipeline = Pipeline(pipeline, min_visibility=min_visibility)
        self.seed, self.epoch = 0, 0
        self.image_ids = self._valid_image_ids(skip_invalid)

    def set_epoch(self, epoch: int) -> None:
        """Augmentations are drawn per (seed, epoch, index): reproducible across workers and resumes."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.image_ids)

    # -- validation ---------------------------------------------------------------------------
    def _valid_image_ids(self, skip_invalid: bool) -> list[int]:
        kept, skipped = [], {}
        for image_id in sorted(self.coco.imgs):
            try:
                self._check_image(image_id)
                kept.append(image_id)
            except InvalidSampleError as err:
                if not skip_invalid:
                    raise
                reason = str(err).split(":")[0]
                skipped[reason] = skipped.get(reason, 0) + 1
                logger.warning(f"skipping image {image_id}: {err}")
        if skipped:
            logger.warning(f"{self.ann_file}: skipped {sum(skipped.values())} of {len(self.coco.imgs)} images "
                           f"(skip_invalid=True): {skipped}")
        return kept

    def _check_image(self, image_id: int) -> None:
        info = self.coco.imgs[image_id]
        path = self.img_dir / info["file_name"]
        if not path.is_file():
            raise InvalidSampleError(f"image file not found: {path} (image id {image_id} in {self.ann_file})")
        height, width = info["height"], info["width"]
        if "cls" in self.tasks and not 0 <= int(info.get("label", -1)) < self.num_classes["cls"]:
            raise InvalidSampleError(f"bad image label: image id {image_id} in {self.ann_file} has label "
                                     f"{info.get('label')!r}, expected 0..{self.num_classes['cls'] - 1}")
        for ann in self.coco.imgToAnns.get(image_id, []):
            where = f"annotation id {ann['id']} (image {info['file_name']}) in {self.ann_file}"
            if ann["category_id"] not in self._cat_index:
                raise InvalidSampleError(f"unknown category id: {ann['category_id']} in {where}; "
                                         f"categories are {self.cat_ids}")
            x, y, w, h = ann["bbox"]
            if w <= 0 or h <= 0:
                raise InvalidSampleError(f"zero-area box: {ann['bbox']} in {where}")
            if x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
                raise InvalidSampleError(f"box outside the image: {ann['bbox']} for a {width}x{height} image in {where}")
            seg = ann.get("segmentation")
            if isinstance(seg, dict) and list(seg.get("size", [])) != [height, width]:
                raise InvalidSampleError(f"mask of the wrong size: {seg.get('size')} for a {height}x{width} "
                                         f"image in {where}")

    # -- loading ------------------------------------------------------------------------------
    def _semantic_mask(self, image_id: int, anns: list[dict], height: int, width: int) -> np.ndarray:
        if self.mask_dir is not None:
            path = self.mask_dir / (Path(self.coco.imgs[image_id]["file_name"]).stem + ".png")
            with Image.open(path) as img:
                mask = np.asarray(img)
            if mask.shape[:2] != (height, width):
                raise InvalidSampleError(f"mask of the wrong size: {path} is {mask.shape[1]}x{mask.shape[0]}, "
                                         f"the image is {width}x{height}")
            return mask.astype(np.uint8)
        mask = np.zeros((height, width), np.uint8)
        for ann in anns:
            if not ann.get("segmentation"):
                continue
            binary = self.coco.annToMask(ann).astype(bool)
            mask[binary] = IGNORE_INDEX if ann.get("iscrowd", 0) else self._cat_index[ann["category_id"]] + 1
        return mask

    def __getitem__(self, index: int) -> dict:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        image = read_rgb(self.img_dir / info["file_name"])
        height, width = image.shape[:2]
        if (height, width) != (info["height"], info["width"]):
            raise InvalidSampleError(f"image {self.img_dir / info['file_name']} is {width}x{height} but "
                                     f"{self.ann_file} says {info['width']}x{info['height']}")
        anns = self.coco.imgToAnns.get(image_id, [])
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns if not a.get("iscrowd", 0)], np.float32).reshape(-1, 4)
        boxes = np.clip(boxes, 0, [width, height, width, height])
        labels = np.array([self._cat_index[a["category_id"]] for a in anns if not a.get("iscrowd", 0)], np.int64)
        mask = self._semantic_mask(image_id, anns, height, width) if "seg" in self.tasks else None
        out = self.pipeline(image, mask, boxes, labels, seed=sample_seed(self.seed, self.epoch, index))
        sample = {"img": torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()}
        if "seg" in self.tasks:
            sample["seg"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
        if "det" in self.tasks:
            sample["boxes"], sample["labels"] = torch.from_numpy(out["boxes"]), torch.from_numpy(out["labels"])
        if "cls" in self.tasks:
            sample["cls"] = torch.tensor(int(info["label"]), dtype=torch.long)
        sample["meta"] = {"image_id": image_id, "file_name": info["file_name"], "ori_size": (height, width),
                          "img_size": tuple(out["image"].shape[:2]), "scale_factor": out["scale_factor"],
                          "offset": out["offset"], "flip": out["flip"]}
        return sample
