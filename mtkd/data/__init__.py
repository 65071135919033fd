"""Data: the synthetic generator, datasets, albumentations pipelines, collate and loaders."""
from mtkd.data.builder import ShardSampler, build_dataloader, build_dataset
from mtkd.data.coco import CocoMultiTaskDataset, InvalidSampleError
from mtkd.data.collate import collate
from mtkd.data.imagefolder import ImageFolderDataset
from mtkd.data.synthetic import SHAPES, make_synthetic_dataset
from mtkd.data.transforms import Pipeline, build_transform

__all__ = ["CocoMultiTaskDataset", "ImageFolderDataset", "InvalidSampleError", "Pipeline", "SHAPES", "ShardSampler",
           "build_dataloader", "build_dataset", "build_transform", "collate", "make_synthetic_dataset"]
