# ImageFolder classification data (the original recipe's layout): data_root/{train,val}/<class>/*.jpg.
# Classes are the sorted folder names, or the order of `labels_file` when set ("index class_name" per line,
# relative to data_root; folders named by class name or by index), so predictions print those names.
# `tools/train.py --data-root R` points every split at R.
data_root = "data/imagefolder"
labels_file = None         # optional, e.g. "labels.txt"
input_size = (224, 224)  # (H, W) of the network input
norm = dict(type="Normalize", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # ImageNet statistics
train_pipeline = [
    dict(type="RandomResizedCrop", size=(224, 224), scale=(0.5, 1.0)),  # random crop, resized to input_size
    dict(type="HorizontalFlip", p=0.5),
    norm,
]
test_pipeline = [  # ImageNet evaluation: shorter side to 256, central 224 x 224
    dict(type="SmallestMaxSize", max_size=256), dict(type="CenterCrop", height=224, width=224), norm]
train_dataloader = dict(
    batch_size=64,             # images per process and step
    num_workers=8,             # loader processes
    shuffle=True,
    drop_last=True,
    dataset=dict(type="ImageFolderDataset", data_root=data_root, split="train", pipeline=train_pipeline,
                 labels_file=labels_file),
)
val_dataloader = dict(
    batch_size=64, num_workers=8, shuffle=False,
    dataset=dict(type="ImageFolderDataset", data_root=data_root, split="val", pipeline=test_pipeline,
                 labels_file=labels_file),
)
test_dataloader = val_dataloader  # the recipe's layout has no separate test split
