"""Convert a PASCAL VOC 2012-style tree into mtkd's COCO-format layout: boxes, class masks, images.

    python tools/dataset_converters/voc.py VOC_ROOT --out OUT [--splits train val] [--skip-invalid]
                                          [--link {hard,sym}] [--no-progress]

Reads, for every id listed in ``VOC_ROOT/ImageSets/Segmentation/{split}.txt``, ``Annotations/<id>.xml``,
``JPEGImages/<id>.jpg`` and ``SegmentationClass/<id>.png``, and writes::

    OUT/annotations/instances_{split}.json   OUT/images/{split}/<id>.jpg   OUT/masks/{split}/<id>.png

which ``configs/_base_/datasets/voc.py`` reads: ``tools/train.py CONFIG --data-root OUT``.

Classes: the json's categories are the 20 VOC classes in VOC order with ids 1..20, so category id k is
VOC class index k. The masks keep the source indices (0 background, 1..20 the classes, 255 void: the
object borders and unlabelled regions), re-encoded as palette PNGs with the VOC colours. mtkd's semantic
mask reader (``SemanticMaskTarget(mask_dir=...)``) reads pixel value ``i + 1`` as its ``i``-th category
(categories sorted by id) and 0 as background, i.e. exactly the VOC index: 21 classes, 255 ignored.

Boxes: VOC ``bndbox`` values are 1-based inclusive pixel indices (``xmin=1, xmax=W`` is the whole width).
COCO boxes are in continuous coordinates on pixel edges, so ``x = xmin - 1, w = xmax - xmin + 1`` (and
the same for y): detectron2's convention (``data/datasets/pascal_voc.py``), which gives a box that
encloses an object's pixels the same numbers pycocotools' ``toBbox`` gives for that object's mask, as
mtkd's own data has. (mmdet subtracts 1 from all four values, ``w = xmax - xmin``: one pixel narrower.)
A box at most 1 px outside the image is clipped to it; further out, or empty, is an error.

Difficult objects (``<difficult>1``) get ``iscrowd=1``: mtkd's training targets and COCOeval ignore
them, as mmdet ignores them (``ignore_flag``). Annotations carry no ``segmentation``: the class masks
are the segmentation ground truth, not boxes painted as masks.

A listed id whose XML, image or mask is missing, an unreadable XML, an unknown class name, a bad box, an
image whose size disagrees with its XML or a mask of another size or with values outside 0..20 and 255
is an error naming the file (exit status 2); with ``--skip-invalid`` the image is skipped and counted.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from mtkd.cli import add_debug_argument, run_tool  # noqa: E402

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOID = 255  # VOC's void label: borders and unlabelled regions, mtkd's ignore index
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class InvalidVOCError(ValueError):
    """A listed image that cannot be converted; the message starts with the reason, then names the file."""


@dataclass
class Sample:
    """One converted image: its files, size (H, W), boxes and class masks, ready to write."""
    stem: str
    image_path: Path
    size: tuple[int, int]
    mask: np.ndarray
    objects: list[dict] = field(default_factory=list)


def voc_palette() -> list[int]:
    """VOC's colour map (256 RGB triples, flat): index bits spread over the high bits of R, G, B."""
    palette = []
    for index in range(256):
        rgb, value = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        palette += rgb
    return palette


# -- reading one VOC image --------------------------------------------------------------------------------
def read_sample(root: Path, stem: str) -> Sample:
    """The image, objects and class mask of id ``stem``; InvalidVOCError naming the file when one is bad."""
    xml_path = root / "Annotations" / f"{stem}.xml"
    if not xml_path.is_file():
        raise InvalidVOCError(f"missing annotation: {xml_path} (id {stem} is listed for conversion)")
    xml = parse_xml(xml_path)
    image_path = find_image(root, stem)
    height, width = header_size(image_path, "image")
    if xml["size"] not in (None, (height, width)):
        raise InvalidVOCError(f"image size disagrees with its annotation: {image_path} is {width}x{height}, "
                              f"{xml_path} says {xml['size'][1]}x{xml['size'][0]}")
    objects = [coco_box(obj, (height, width), xml_path) for obj in xml["objects"]]
    mask = read_mask(root / "SegmentationClass" / f"{stem}.png", (height, width), image_path)
    return Sample(stem, image_path, (height, width), mask, objects)


def parse_xml(path: Path) -> dict:
    """``{"size": (H, W) or None, "objects": [{name, difficult, bndbox (4 floats)}]}`` of a VOC XML."""
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        hw = None if size is None else (int(size.findtext("height")), int(size.findtext("width")))
        hw = hw if hw and min(hw) > 0 else None  # some VOC-like trees write 0 x 0: the image decides
        objects = []
        for obj in root.findall("object"):
            name = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            values = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            objects.append({"name": name, "difficult": int(obj.findtext("difficult") or 0), "bndbox": values})
    except (ET.ParseError, AttributeError, TypeError, ValueError) as err:
        reason = err if isinstance(err, ET.ParseError) else f"a size or object without numeric fields ({err})"
        raise InvalidVOCError(f"malformed annotation: {path}: {reason}") from None
    for obj in objects:
        if obj["name"] not in CLASSES:
            close = difflib.get_close_matches(obj["name"], CLASSES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; VOC classes: {', '.join(CLASSES)}"
            raise InvalidVOCError(f"unknown class: {obj['name']!r} in {path}{hint}")
    return {"size": hw, "objects": objects}


def coco_box(obj: dict, size: tuple[int, int], xml_path: Path) -> dict:
    """A VOC object -> ``{category_id, bbox [x, y, w, h], area, iscrowd}`` (see the module docstring)."""
    xmin, ymin, xmax, ymax = obj["bndbox"]
    height, width = size
    x0, y0, x1, y1 = xmin - 1, ymin - 1, xmax, ymax
    if x1 <= x0 or y1 <= y0 or x0 < -1 or y0 < -1 or x1 > width + 1 or y1 > height + 1:
        raise InvalidVOCError(f"bad box: {xml_path}: {obj['name']} bndbox {obj['bndbox']} (1-based xmin, ymin, "
                              f"xmax, ymax) is empty or outside the {width}x{height} image")
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    return {"category_id": CLASSES.index(obj["name"]) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": (x1 - x0) * (y1 - y0), "iscrowd": int(obj["difficult"] != 0)}


def find_image(root: Path, stem: str) -> Path:
    """``JPEGImages/<stem>.jpg`` (or .jpeg, .png)."""
    for suffix in IMAGE_SUFFIXES:
        path = root / "JPEGImages" / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise InvalidVOCError(f"missing image: {root / 'JPEGImages' / (stem + '.jpg')} (id {stem} has an annotation)")


def header_size(path: Path, what: str) -> tuple[int, int]:
    """``(H, W)`` from a file's header; InvalidVOCError naming the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except (OSError, ValueError) as err:
        raise InvalidVOCError(f"unreadable {what}: {path}: {err}") from None


def read_mask(path: Path, size: tuple[int, int], image_path: Path) -> np.ndarray:
    """The class indices ``uint8 [H, W]`` of a palette (or grayscale) PNG, checked against the image."""
    if not path.is_file():
        raise InvalidVOCError(f"missing mask: {path} (listed in the segmentation split)")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise InvalidVOCError(f"bad mask: {path} has mode {img.mode}, expected a palette (P) or "
                                      f"grayscale (L) PNG of class indices, as VOC's SegmentationClass")
            mask = np.array(img, np.uint8)  # a P image gives its indices, not colours
    except OSError as err:
        raise InvalidVOCError(f"unreadable mask: {path}: {err}") from None
    if mask.shape != size:
        raise InvalidVOCError(f"mask of the wrong size: {path} is {mask.shape[1]}x{mask.shape[0]}, the image "
                              f"{image_path} is {size[1]}x{size[0]}")
    bad = np.setdiff1d(np.unique(mask), [*range(len(CLASSES) + 1), VOID])
    if bad.size:
        raise InvalidVOCError(f"bad mask: {path} holds values {bad.tolist()[:10]}, expected 0..{len(CLASSES)} "
                              f"or {VOID}")
    return mask


# -- writing ---------------------------------------------------------------------------------------------
def place_image(source: Path, target: Path, link: str | None) -> None:
    """Copy (default), hard-link or symlink (absolute) ``source`` to ``target``, replacing what is there."""
    target.unlink(missing_ok=True)
    if link == "hard":
        os.link(source, target)
    elif link == "sym":
        target.symlink_to(source.resolve())
    else:
        shutil.copyfile(source, target)


def write_mask(mask: np.ndarray, path: Path) -> None:
    """Class indices as a palette PNG (VOC colours): one channel whose values are the indices."""
    img = Image.fromarray(mask)  # mode L
    img.putpalette(voc_palette())  # -> mode P, same bytes
    img.save(path, optimize=True)


def write_json(content: dict, path: Path) -> None:
    """Written to a temporary file and renamed: a reader never sees half a json."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, separators=(",", ":")))
    os.replace(tmp, path)


def categories() -> list[dict]:
    return [{"id": i + 1, "name": name, "supercategory": "none"} for i, name in enumerate(CLASSES)]


# -- one split ---------------------------------------------------------------------------------------------
def read_split_ids(root: Path, split: str) -> list[str]:
    """The ids of ``ImageSets/Segmentation/{split}.txt`` (first word of each non-empty line)."""
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        nested = sorted(p.name for p in root.glob("VOC20*") if (p / "ImageSets").is_dir())
        hint = f"; VOC_ROOT should be the folder holding ImageSets/, e.g. {root / nested[0]}" if nested else ""
        raise FileNotFoundError(f"split list not found: {path}{hint}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def convert_split(root: Path, out: Path, split: str, skip_invalid: bool, link: str | None,
                  progress: bool) -> dict:
    """Convert one split; return ``{images, objects, difficult, skipped: Counter(reason)}``."""
    for folder in ("images", "masks"):
        (out / folder / split).mkdir(parents=True, exist_ok=True)
    images, annotations, skipped, seen = [], [], Counter(), set()
    for stem in tqdm(read_split_ids(root, split), desc=f"voc {split}", disable=not progress, leave=False):
        try:
            if stem in seen:
                raise InvalidVOCError(f"duplicate id: {stem} is listed twice in ImageSets/Segmentation/{split}.txt")
            seen.add(stem)
            sample = read_sample(root, stem)
        except InvalidVOCError as err:
            if not skip_invalid:
                raise
            skipped[str(err).split(":")[0]] += 1
            print(f"skipping {split} id {stem}: {err}", file=sys.stderr)
            continue
        image_id = len(images) + 1
        file_name = sample.stem + sample.image_path.suffix
        place_image(sample.image_path, out / "images" / split / file_name, link)
        write_mask(sample.mask, out / "masks" / split / f"{sample.stem}.png")
        images.append({"id": image_id, "file_name": file_name, "height": sample.size[0], "width": sample.size[1]})
        annotations += [{"id": len(annotations) + k + 1, "image_id": image_id, **obj}
                        for k, obj in enumerate(sample.objects)]
    info = {"description": f"PASCAL VOC segmentation split {split!r} of {root}, converted by "
                           f"tools/dataset_converters/voc.py", "masks": f"masks/{split}"}
    write_json({"info": info, "images": images, "annotations": annotations, "categories": categories()},
               out / "annotations" / f"instances_{split}.json")
    return {"images": len(images), "objects": len(annotations),
            "difficult": sum(a["iscrowd"] for a in annotations), "skipped": skipped}


# -- command line ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert a PASCAL VOC 2012-style tree (Annotations/, JPEGImages/, SegmentationClass/, "
                    "ImageSets/Segmentation/) into annotations/instances_{split}.json, images/{split}/ and "
                    "masks/{split}/ (class indices 0..20, 255 void) for configs/_base_/datasets/voc.py.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("voc_root", help="the VOC folder holding Annotations/ and ImageSets/ (e.g. VOCdevkit/VOC2012)")
    parser.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"],
                        help="split lists of ImageSets/Segmentation/ to convert")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip and count an image with a missing or bad file instead of stopping")
    parser.add_argument("--link", choices=("hard", "sym"),
                        help="hard-link or symlink the images instead of copying them (saves disk)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return add_debug_argument(parser)


def summary_line(split: str, numbers: dict) -> str:
    skipped = numbers["skipped"]
    reasons = f" ({', '.join(f'{r}: {n}' for r, n in sorted(skipped.items()))})" if skipped else ""
    return (f"{split:>5}: {numbers['images']} images, {numbers['objects']} objects "
            f"({numbers['difficult']} difficult, iscrowd=1), {sum(skipped.values())} skipped{reasons}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root, out = Path(args.voc_root), Path(args.out)
    if not root.is_dir():
        print(f"error: VOC_ROOT is not a folder: {root}", file=sys.stderr)
        return 2
    start, progress = time.perf_counter(), not args.no_progress and sys.stderr.isatty()
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    summary = {}
    for split in dict.fromkeys(args.splits):   # an InvalidVOCError or OSError: one line from run_tool
        summary[split] = convert_split(root, out, split, args.skip_invalid, args.link, progress)
    for split, numbers in summary.items():
        print(summary_line(split, numbers))
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s (categories: the {len(CLASSES)} VOC classes, "
          f"ids 1..{len(CLASSES)}; masks: 0 background, 1..{len(CLASSES)} classes, {VOID} void)")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
