"""Data: the synthetic generator, target readers, datasets, albumentations pipelines, collate and loaders."""
from mtkd.data import targets  # noqa: F401  (registers the target readers before any dataset is built)
from mtkd.data.builder import ShardSampler, build_dataloader, build_dataset, build_loader
from mtkd.data.coco import CocoMultiTaskDataset
from mtkd.data.collate import collate
from mtkd.data.imagefolder import ImageFolderDataset
from mtkd.data.io import InvalidSampleError
from mtkd.data.synthetic import SHAPES, make_synthetic_dataset
from mtkd.data.transforms import Pipeline, build_transform

__all__ = ["CocoMultiTaskDataset", "ImageFolderDataset", "InvalidSampleError", "Pipeline", "SHAPES", "ShardSampler",
           "build_dataloader", "build_dataset", "build_loader", "build_transform", "collate",
           "make_synthetic_dataset", "targets"]
