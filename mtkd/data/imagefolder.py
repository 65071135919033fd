"""ImageFolder classification data: ``root/<split>/<class>/*.jpg`` (the original recipe's layout)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from mtkd.data.io import read_rgb
from mtkd.data.transforms import Pipeline, sample_seed
from mtkd.registry import DATASETS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def read_labels_file(path: Path) -> list[str]:
    """``index class_name`` per line -> names ordered by index; gaps or duplicates are errors."""
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path} (expected 'index class_name' per line)")
    names: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        index, _, name = line.strip().partition(" ") if " " in line.strip() else line.strip().partition("\t")
        if not index.isdigit() or not name.strip():
            raise ValueError(f"{path}, line {number}: expected 'index class_name', got {line!r}")
        if int(index) in names:
            raise ValueError(f"{path}, line {number}: index {index} appears twice")
        names[int(index)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: indices must be 0..{len(names) - 1} without gaps, got {sorted(names)}")
    return [names[i] for i in range(len(names))]


@DATASETS.register_module()
class ImageFolderDataset(torch.utils.data.Dataset):
    """Classification only: samples ``{img, cls, meta}`` from ``data_root/<split>/<class>/*.jpg``.

    Classes are the sorted folder names, or with ``labels_file`` (``index class_name`` per line, relative
    to ``data_root``) the file's order, folders being named by class name or by index.
    """

    def __init__(self, data_root: str, split: str = "train", pipeline: Sequence[Mapping] = (),
                 labels_file: str | None = None):
        self.root = Path(data_root) / split
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolderDataset: no folder {self.root} "
                                    f"(expected {data_root}/{split}/<class>/*.jpg)")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        names = read_labels_file(Path(data_root) / labels_file) if labels_file else folders
        folder_labels = {folder: folder_label(folder, names, labels_file) for folder in folders}
        self.samples = [(path, folder_labels[folder]) for folder in folders
                        for path in sorted((self.root / folder).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise ValueError(f"ImageFolderDataset: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under "
                             f"{self.root}/<class>/")
        self.tasks = ("cls",)
        self.num_classes = {"cls": len(names)}
        self.class_names = {"cls": list(names)}
        self.pipeline = Pipeline(pipeline)
        self.seed, self.epoch = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentations are drawn per (seed, epoch, index): reproducible across workers and resumes."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        path, label = self.samples[index]
        image = read_rgb(path)
        out = self.pipeline(image, seed=sample_seed(self.seed, self.epoch, index))
        return {
            "img": torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float(),
            "cls": torch.tensor(label, dtype=torch.long),
            "meta": {"image_id": index, "file_name": path.relative_to(self.root).as_posix(),
                     "ori_size": image.shape[:2], "img_size": tuple(out["image"].shape[:2]),
                     "scale_factor": out["scale_factor"], "offset": out["offset"], "flip": out["flip"],
                     "vflip": out["vflip"]},
        }


def folder_label(folder: str, names: list[str], labels_file: str | None) -> int:
    """The class index of a folder: its position in ``names``, or its own number when named by index."""
    if folder in names:
        return names.index(folder)
    if labels_file and folder.isdigit() and int(folder) < len(names):
        return int(folder)
    raise ValueError(f"class folder {folder!r} is neither a class name nor an index (0..{len(names) - 1}) "
                     f"of the labels file {labels_file}")
