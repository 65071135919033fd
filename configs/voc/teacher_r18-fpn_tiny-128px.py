# Quick VOC check: the tiny ResNet-18 + FPN teacher (seg / det / cls heads) at a 128 px letterbox, for small
# images such as the VOC-like trees of tests/test_voc_converter.py (write_voc_tree) or a first CPU run on VOC.
#   python tools/train.py configs/voc/teacher_r18-fpn_tiny-128px.py --data-root /tmp/voc_conv
_base_ = [
    "../_base_/models/teacher_r18-fpn_tiny.py",
    "../_base_/datasets/voc.py",
    "../_base_/schedules/adamw_cosine-24e.py",
    "../_base_/default_runtime.py",
]
model = dict(heads=dict(depth=None))  # no depth ground truth in VOC
param_scheduler = dict(warmup=dict(total_iters=100))  # iterations: small trees have few steps per epoch
input_size = (128, 128)  # (H, W) of the network input
_letterbox = [
    dict(type="LongestMaxSize", max_size=128),
    dict(type="PadIfNeeded", min_height=128, min_width=128, position="top_left", fill=0, fill_mask=255),
]
train_pipeline = [
    *_letterbox,
    dict(type="HorizontalFlip", p=0.5),
    dict(type="Affine", scale=(0.75, 1.25), keep_ratio=True, translate_percent=(-0.1, 0.1), fill=0, fill_mask=255,
         p=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    _base_.norm,
]
test_pipeline = [*_letterbox, _base_.norm]
train_dataloader = dict(batch_size=32, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, num_workers=2, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(batch_size=32, num_workers=2, dataset=dict(pipeline=test_pipeline))
