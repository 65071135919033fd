# Real COCO-format multi-task data: instances json + images (+ optional PNG semantic masks), 512 px input.
# Expected layout under data_root (override with --data-root):
#   annotations/instances_{train,val,test}.json   images/{train,val,test}/...   [masks/{split}/<stem>.png]
# An image-level label needs images[i]["label"] and a top-level "image_categories" list; without them the
# dataset has no `cls` task. Class counts are read from the json.
data_root = "data/coco"
input_size = (512, 512)  # (H, W) of the network input
norm = dict(type="Normalize", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # ImageNet statistics
train_pipeline = [
    dict(type="LongestMaxSize", max_size=512),
    dict(type="PadIfNeeded", min_height=512, min_width=512, position="top_left", fill=0, fill_mask=255),
    dict(type="HorizontalFlip", p=0.5),
    dict(type="Affine", scale=(0.75, 1.25), keep_ratio=True, translate_percent=(-0.1, 0.1), fill=0, fill_mask=255,
         p=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    norm,
]
test_pipeline = [  # letterbox: exact scale/offset back to original pixels for COCOeval
    dict(type="LongestMaxSize", max_size=512),
    dict(type="PadIfNeeded", min_height=512, min_width=512, position="top_left", fill=0, fill_mask=255),
    norm,
]
dataset_type = "CocoMultiTaskDataset"
train_dataloader = dict(
    batch_size=16,             # images per process and step
    num_workers=8,             # loader processes
    shuffle=True,
    drop_last=True,
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="annotations/instances_train.json",
                 img_dir="images/train", pipeline=train_pipeline, skip_invalid=True),  # log and count bad samples
)
val_dataloader = dict(
    batch_size=16, num_workers=8, shuffle=False,
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="annotations/instances_val.json",
                 img_dir="images/val", pipeline=test_pipeline),
)
test_dataloader = dict(
    batch_size=16, num_workers=8, shuffle=False,
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="annotations/instances_test.json",
                 img_dir="images/test", pipeline=test_pipeline),
)
