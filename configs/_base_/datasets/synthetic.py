# The embedded synthetic multi-task set (make it with: python tools/make_synthetic.py --out data/synthetic).
data_root = "data/synthetic"
# How the data at data_root is made: tools/train.py writes it when it is missing (single process), the same
# bytes as `python tools/make_synthetic.py --out data/synthetic` (these are that tool's defaults).
synthetic_data = dict(out=data_root, num_train=2000, num_val=500, num_test=500, size=128, seed=0)
input_size = (128, 128)  # (H, W) of the network input
norm = dict(type="Normalize", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # ImageNet statistics
train_pipeline = [
    dict(type="HorizontalFlip", p=0.5),
    dict(type="Affine", scale=(0.8, 1.2), keep_ratio=True, translate_percent=(-0.1, 0.1), fill=0, fill_mask=255, p=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    dict(type="Resize", height=128, width=128),
    norm,
]
test_pipeline = [dict(type="Resize", height=128, width=128), norm]
train_dataloader = dict(
    batch_size=32,             # images per process and step
    num_workers=2,             # loader processes
    shuffle=True,
    drop_last=True,
    dataset=dict(type="CocoMultiTaskDataset", data_root=data_root, ann_file="annotations/instances_train.json",
                 img_dir="images/train", pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=32, num_workers=2, shuffle=False,
    dataset=dict(type="CocoMultiTaskDataset", data_root=data_root, ann_file="annotations/instances_val.json",
                 img_dir="images/val", pipeline=test_pipeline),
)
test_dataloader = dict(
    batch_size=32, num_workers=2, shuffle=False,
    dataset=dict(type="CocoMultiTaskDataset", data_root=data_root, ann_file="annotations/instances_test.json",
                 img_dir="images/test", pipeline=test_pipeline),
)
