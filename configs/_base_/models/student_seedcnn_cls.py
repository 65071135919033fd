# Classification student of the original recipe: the four-block SeedConvNet, GAP + linear on its last map.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="SeedConvNet", channels=(32, 64, 128, 256), out_indices=(3,)),  # stride 16, 256 channels
    neck=dict(type="IdentityNeck"),
    heads=dict(cls=dict(type="ClsHead", dropout=0.2)),  # num_classes from the data
)
