"""Metrics under DDP: two gloo processes, each seeing half the data, give the one-process result."""
import json
import math

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler
from test_det_metric import GT_BOXES, TinyCocoData, detections, feed, write_tiny_coco

from mtkd.evaluation import ClsMetric, CocoDetMetric, SegMetric


def make_data(seed=0):
    """Five seg batches, five cls batches and one shifted-box detection set per image of the tiny COCO."""
    gen = torch.Generator().manual_seed(seed)
    seg, cls = [], []
    for _ in range(5):
        target = torch.randint(0, 4, (2, 8, 8), generator=gen)
        target[torch.rand(target.shape, generator=gen) < 0.2] = 255
        pred = torch.where(torch.rand(target.shape, generator=gen) < 0.6, target.clamp(max=4),
                           torch.randint(0, 5, target.shape, generator=gen))
        seg.append((pred, target))
        cls.append((torch.rand(2, 6, generator=gen), torch.randint(0, 6, (2,), generator=gen)))
    shifts = torch.randint(-4, 5, (len(GT_BOXES), 2), generator=gen).tolist()
    det = [(image_id, detections(image_id, shift)) for image_id, shift in zip(GT_BOXES, shifts)]
    return seg, cls, det


def evaluate(data, seg, cls, det):
    """Every metric's compute() plus the per-class tables, as one flat dict."""
    seg_metric, cls_metric, det_metric = SegMetric(num_classes=5, resolution="input"), ClsMetric(num_classes=6), CocoDetMetric(dataset=data)
    for pred, target in seg:
        seg_metric.update(list(pred), {"seg": target})
    for probs, labels in cls:
        cls_metric.update(probs, {"cls": labels})
    for image_id, dets in det:
        feed(det_metric, image_id, *dets, scale=2.0)
    out = {**seg_metric.compute(), **cls_metric.compute(), **det_metric.compute()}
    out.update({f"seg/iou/{k}": v for k, v in seg_metric.per_class().items()})
    out.update({f"det/ap/{k}": v for k, v in det_metric.per_class().items()})
    return out


def worker(rank, ann_file, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    seg, cls, det = make_data()
    # seg/cls: the engine passes only real samples; det: DistributedSampler pads rank 1 with image 0 again
    padded = list(DistributedSampler(det, num_replicas=2, rank=rank, shuffle=False))
    result = evaluate(TinyCocoData(ann_file), seg[rank::2], cls[rank::2], [det[i] for i in padded])
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def test_two_processes_each_with_half_the_data_equal_one_process(tmp_path):
    ann_file = write_tiny_coco(tmp_path / "tiny.json")
    mp.spawn(worker, args=(ann_file, tmp_path / "init", tmp_path), nprocs=2, join=True)
    expected = evaluate(TinyCocoData(ann_file), *make_data())
    assert 0 < expected["det/mAP"] < 100 and 0 < expected["seg/mIoU"] < 100 and 0 < expected["cls/top1"] < 100
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert math.isclose(got[key], value, abs_tol=1e-9) or (math.isnan(got[key]) and math.isnan(value)), key
