# The embedded synthetic set at a 64 px network input and batch 16: the CPU demo's data settings (the
# images on disk stay 128 px; Resize brings them to 64 after augmentation). 4x fewer pixels than 128 px
# and twice the optimizer steps per epoch, so a few CPU epochs train the tiny models far enough to compare.
_base_ = "./synthetic.py"
input_size = (64, 64)  # (H, W) of the network input
train_pipeline = [
    dict(type="HorizontalFlip", p=0.5),
    dict(type="Affine", scale=(0.8, 1.2), keep_ratio=True, translate_percent=(-0.1, 0.1), fill=0, fill_mask=255, p=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    dict(type="Resize", height=64, width=64),
    _base_.norm,
]
test_pipeline = [dict(type="Resize", height=64, width=64), _base_.norm]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
