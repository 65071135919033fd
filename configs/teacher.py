# Teacher at full size: ResNet-50 + FPN with seg / det / cls heads, on the embedded synthetic set by default
# (point --data-root, or a COCO-format dataset config, at real data). GPU schedule: 24 epochs, AMP.
_base_ = [
    "_base_/models/teacher_r50-fpn.py",
    "_base_/datasets/synthetic.py",
    "_base_/schedules/adamw_cosine-24e.py",
    "_base_/default_runtime.py",
]
train_dataloader = dict(batch_size=32, num_workers=8)  # per GPU
val_dataloader = dict(num_workers=8)
