# Teacher on PASCAL VOC 2012 (converted with tools/dataset_converters/voc.py): ResNet-50 + FPN with seg / det /
# cls heads at a 512 px letterbox, AdamW 24 epochs. VOC has no depth maps, so the depth head is dropped; class
# counts come from the data (seg 21 = background + 20, det 20, cls 20).
#   python tools/train.py configs/voc/teacher_r50-fpn.py --data-root data/voc
_base_ = [
    "../_base_/models/teacher_r50-fpn.py",
    "../_base_/datasets/voc.py",
    "../_base_/schedules/adamw_cosine-24e.py",
    "../_base_/default_runtime.py",
]
model = dict(heads=dict(depth=None))  # no depth ground truth in VOC
train_dataloader = dict(batch_size=16, num_workers=8)  # per GPU (1464 train images: 91 steps per epoch)
val_dataloader = dict(num_workers=8)
