"""ImageFolder classification data: ``root/<split>/<class>/*.jpg`` (the original recipe's layout)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from mtkd.data.coco import read_rgb
from mtkd.data.transforms import Pipeline, sample_seed
from mtkd.registry import DATASETS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def read_labels_file(path: Path) -> list[str]:
    """``index class_name`` per line -> names ordered by index; gaps or duplicates are errors."""
    names: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        index, _, name = line.strip().partition(" ")
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
    """Classification only: samples ``{img, cls, meta}``. Classes are the sorted folder names, or the
    order of ``labels_file`` (``index class_name`` per line) when given, so predictions print names."""

    def __init__(self, data_root: str, split: str = "train", pipeline: Sequence[Mapping] = (),
                 labels_file: str | None = None):
        self.root = Path(data_root) / split
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolderDataset: no folder {self.root} (expected {data_root}/{split}/<class>/*.jpg)")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        names = read_labels_file(Path(data_root) / labels_file) if labels_file else folders
        missing = sorted(set(folders) - set(names))
        if missing:
            raise ValueError(f"{self.root}: class folders {missing} are not in the labels file {labels_file}")
        self.samples = [(path, names.index(folder)) for folder in folders
                        for path in sorted((self.root / folder).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise ValueError(f"ImageFolderDataset: no images under {self.root}/<class>/")
        self.tasks = ("cls",)
        self.num_classes = {"cls": len(names)}
        self.class_names = {"cls": list(names)}
        self.pipeline = Pipeline(pipeline)
        self.seed, self.epoch = 0, 0

    def set_epoch(self, epoch: int) -> None:
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
            "meta": {"image_id": index, "file_name": str(path.relative_to(self.root)), "ori_size": image.shape[:2],
                     "img_size": tuple(out["image"].shape[:2]), "scale_factor": out["scale_factor"],
                     "offset": out["offset"], "flip": out["flip"]},
        }
