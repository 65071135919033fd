import pytest
import torch

from mtkd.data import ShardSampler, build_dataloader


def loader_cfg(root, shuffle=True, **extra):
    return dict(batch_size=4, num_workers=0, shuffle=shuffle, **extra,
                dataset=dict(type="CocoMultiTaskDataset", data_root=str(root), ann_file="annotations/instances_train.json",
                             img_dir="images/train", pipeline=[dict(type="Resize", height=32, width=32), dict(type="Normalize")]))


def test_batch_matches_the_contract(tiny_synthetic):
    batch = next(iter(build_dataloader(loader_cfg(tiny_synthetic))))
    assert batch["img"].shape == (4, 3, 32, 32) and batch["img"].dtype == torch.float32
    assert batch["seg"].shape == (4, 32, 32) and batch["seg"].dtype == torch.long
    assert batch["cls"].shape == (4,) and batch["cls"].dtype == torch.long
    assert len(batch["boxes"]) == len(batch["labels"]) == len(batch["meta"]) == 4
    for boxes, labels in zip(batch["boxes"], batch["labels"]):
        assert boxes.shape == (len(labels), 4) and labels.dtype == torch.long
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 32).all()
    assert {"image_id", "file_name", "ori_size", "img_size", "scale_factor", "offset", "flip"} <= set(batch["meta"][0])


def ids(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [m["image_id"] for batch in loader for m in batch["meta"]]


def test_shuffled_order_is_a_function_of_seed_and_epoch(tiny_synthetic):
    a, b = build_dataloader(loader_cfg(tiny_synthetic), seed=1), build_dataloader(loader_cfg(tiny_synthetic), seed=1)
    assert ids(a, 0) == ids(b, 0) and ids(a, 0) != ids(a, 1) and sorted(ids(a, 2)) == list(range(1, 17))
    unshuffled = build_dataloader(loader_cfg(tiny_synthetic, shuffle=False))
    assert [m["image_id"] for batch in unshuffled for m in batch["meta"]] == list(range(1, 17))


def test_shard_sampler_covers_every_index_once_without_padding():
    shards = [list(ShardSampler(11, rank, 3)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(11)) and [len(s) for s in shards] == [4, 4, 3]


def test_unknown_loader_key_is_an_error(tiny_synthetic):
    with pytest.raises(KeyError, match="batchsize"):
        build_dataloader(loader_cfg(tiny_synthetic, batchsize=3))
