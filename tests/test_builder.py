from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from mtkd.config import Config
from mtkd.data import ShardSampler, build_dataloader
from mtkd.engine.utils import set_data_root
from mtkd.structures import IGNORE_INDEX

REPO = Path(__file__).resolve().parents[1]


RESIZE = [dict(type="Resize", height=32, width=32), dict(type="Normalize")]


def loader_cfg(root, shuffle=True, pipeline=RESIZE, **extra):
    return dict(dict(batch_size=4, num_workers=0, shuffle=shuffle), **extra,
                dataset=dict(type="CocoMultiTaskDataset", data_root=str(root), ann_file="annotations/instances_train.json",
                             img_dir="images/train", pipeline=pipeline))


def check_contract(batch, size, num_classes):
    """The batch contract of ``mtkd.structures`` for a seg+det+cls batch of ``size`` px images."""
    n = len(batch["meta"])
    assert batch["img"].shape == (n, 3, size, size) and batch["img"].dtype == torch.float32
    assert batch["seg"].shape == (n, size, size) and batch["seg"].dtype == torch.long
    values = set(batch["seg"].unique().tolist())
    assert values <= set(range(num_classes["seg"])) | {IGNORE_INDEX} and len(values) > 1
    assert batch["cls"].shape == (n,) and batch["cls"].dtype == torch.long
    assert ((batch["cls"] >= 0) & (batch["cls"] < num_classes["cls"])).all()
    assert len(batch["boxes"]) == len(batch["labels"]) == n
    for boxes, labels in zip(batch["boxes"], batch["labels"]):
        assert boxes.dtype == torch.float32 and boxes.shape == (len(labels), 4) and labels.dtype == torch.long
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= size).all()
        assert ((labels >= 0) & (labels < num_classes["det"])).all()
    for meta in batch["meta"]:
        assert {"image_id", "file_name", "ori_size", "img_size", "scale_factor", "offset", "flip"} <= set(meta)
        assert meta["img_size"] == (size, size)


def test_batch_matches_the_contract(tiny_synthetic):
    loader = build_dataloader(loader_cfg(tiny_synthetic))
    batch = next(iter(loader))
    assert len(batch["meta"]) == 4
    check_contract(batch, 32, loader.dataset.num_classes)


@pytest.mark.parametrize("config, size", [("synthetic.py", 128), ("coco.py", 512)])
def test_dataset_configs_build_loaders_that_yield_contract_batches(tiny_synthetic, config, size):
    cfg = Config.fromfile(REPO / "configs/_base_/datasets" / config)
    set_data_root(cfg, str(tiny_synthetic))   # the synthetic set has the COCO-format layout of coco.py
    for split in ("train", "val", "test"):
        loader_cfg = dict(cfg[f"{split}_dataloader"].to_dict(), num_workers=0, batch_size=2)
        loader = build_dataloader(loader_cfg, seed=0)
        check_contract(next(iter(loader)), size, loader.dataset.num_classes)


def test_workers_do_not_change_the_augmentations(tiny_synthetic):
    pipeline = [dict(type="Affine", scale=(0.7, 1.3), translate_percent=(-0.2, 0.2), p=1.0),
                dict(type="ColorJitter", p=1.0), *RESIZE]
    batches = []
    for workers in (0, 2):
        loader = build_dataloader(loader_cfg(tiny_synthetic, pipeline=pipeline, num_workers=workers), seed=3)
        loader.sampler.set_epoch(1)
        loader.dataset.set_epoch(1)
        batches.append(next(iter(loader)))
    assert torch.equal(batches[0]["img"], batches[1]["img"]) and torch.equal(batches[0]["seg"], batches[1]["seg"])
    assert all(torch.equal(a, b) for a, b in zip(batches[0]["boxes"], batches[1]["boxes"]))


def ids(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [m["image_id"] for batch in loader for m in batch["meta"]]


def test_shuffled_order_is_a_function_of_seed_and_epoch(tiny_synthetic):
    a, b = build_dataloader(loader_cfg(tiny_synthetic), seed=1), build_dataloader(loader_cfg(tiny_synthetic), seed=1)
    assert ids(a, 0) == ids(b, 0) and ids(a, 0) != ids(a, 1) and sorted(ids(a, 2)) == list(range(1, 17))
    assert ids(a, 3) == ids(b, 3)  # not a function of how many epochs were drawn before
    other_seed = build_dataloader(loader_cfg(tiny_synthetic), seed=2)
    assert ids(other_seed, 0) != ids(a, 0)
    unshuffled = build_dataloader(loader_cfg(tiny_synthetic, shuffle=False))
    assert [m["image_id"] for batch in unshuffled for m in batch["meta"]] == list(range(1, 17))


@pytest.mark.parametrize("size, world, lengths", [(11, 2, [6, 5]), (16, 2, [8, 8]), (11, 3, [4, 4, 3]), (1, 2, [1, 0])])
def test_shard_sampler_covers_every_index_once_without_padding(size, world, lengths):
    shards = [list(ShardSampler(size, rank, world)) for rank in range(world)]
    assert sorted(sum(shards, [])) == list(range(size)) and [len(s) for s in shards] == lengths
    assert [len(ShardSampler(size, rank, world)) for rank in range(world)] == lengths


def test_unknown_loader_key_is_an_error(tiny_synthetic):
    with pytest.raises(KeyError, match="batchsize"):
        build_dataloader(loader_cfg(tiny_synthetic, batchsize=3))


@pytest.mark.parametrize("shuffle", [True, False])
def test_distributed_ranks_split_the_data(tiny_synthetic, monkeypatch, shuffle):
    from mtkd.data import builder

    seen = []
    for rank in range(3):
        monkeypatch.setattr(builder.dist, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(builder.dist, "get_world_size", lambda: 3)
        loader = build_dataloader(loader_cfg(tiny_synthetic, shuffle=shuffle), distributed=True, seed=0)
        assert isinstance(loader.sampler, DistributedSampler) == shuffle
        seen.append(ids(loader, 0) if shuffle else [m["image_id"] for batch in loader for m in batch["meta"]])
    everything = sorted(sum(seen, []))
    if shuffle:  # DistributedSampler pads 16 images to 18 so that every rank takes as many steps
        assert [len(s) for s in seen] == [6, 6, 6] and set(everything) == set(range(1, 17))
    else:        # evaluation counts every image once
        assert everything == list(range(1, 17))
