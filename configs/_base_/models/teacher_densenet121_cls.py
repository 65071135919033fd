# Classification teacher of the original recipe: timm DenseNet-121, GAP + linear on its last map.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="TimmBackbone", name="densenet121", out_indices=(4,)),  # stride 32, 1024 channels
    neck=dict(type="IdentityNeck"),
    heads=dict(cls=dict(type="ClsHead", dropout=0.2)),  # num_classes from the data
)
