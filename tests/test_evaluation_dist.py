"""Metrics under DDP: two gloo processes, each seeing half the data, give the one-process result."""
import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtkd.data import CocoMultiTaskDataset
from mtkd.evaluation import ClsMetric, CocoDetMetric, SegMetric


def make_inputs(dataset):
    gen = torch.Generator().manual_seed(0)
    items = []
    for image_id in sorted(dataset.coco.imgs):
        target = torch.randint(0, 4, (1, 8, 8), generator=gen)
        seg_pred = torch.where(torch.rand(target.shape, generator=gen) < 0.7, target, torch.zeros_like(target))
        anns = dataset.coco.imgToAnns[image_id]
        boxes = torch.tensor([[a["bbox"][0] + 1, a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns]).reshape(-1, 4)
        det = {"boxes": boxes, "scores": torch.rand(len(anns), generator=gen),
               "labels": torch.tensor([dataset.label_to_cat_id.index(a["category_id"]) for a in anns])}
        meta = {"image_id": image_id, "ori_size": (64, 64), "scale_factor": (1.0, 1.0), "offset": (0.0, 0.0)}
        items.append(dict(seg_pred=seg_pred, seg=target, probs=torch.rand(1, 6, generator=gen),
                          cls=torch.randint(0, 6, (1,), generator=gen), det=det, meta=meta))
    return items


def evaluate_items(dataset, items):
    metrics = [SegMetric(num_classes=4), ClsMetric(num_classes=6), CocoDetMetric(dataset=dataset)]
    for it in items:
        metrics[0].update(list(it["seg_pred"]), {"seg": it["seg"]})
        metrics[1].update(it["probs"], {"cls": it["cls"]})
        metrics[2].update([it["det"]], {"meta": [it["meta"]]})
    out = {}
    for metric in metrics:
        out.update(metric.compute())
    return out


def worker(rank, root, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    dataset = CocoMultiTaskDataset(root, "annotations/instances_val.json", "images/val")
    items = make_inputs(dataset)
    half = (len(items) + 1) // 2
    mine = items[:half] if rank == 0 else items[half:]
    result = evaluate_items(dataset, mine)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def test_two_processes_equal_one(tiny_synthetic, tmp_path):
    mp.spawn(worker, args=(tiny_synthetic, tmp_path / "init", tmp_path), nprocs=2, join=True)
    dataset = CocoMultiTaskDataset(tiny_synthetic, "annotations/instances_val.json", "images/val")
    expected = evaluate_items(dataset, make_inputs(dataset))
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        for key in expected:
            assert abs(got[key] - expected[key]) < 1e-6, key
