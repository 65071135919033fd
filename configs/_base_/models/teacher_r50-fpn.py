# Teacher: timm ResNet-50 + FPN (256 ch) + seg / det / cls / depth heads. Class counts come from the data.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="TimmBackbone", name="resnet50", out_indices=(1, 2, 3, 4)),  # strides 4, 8, 16, 32
    neck=dict(type="FPN", out_channels=256),
    heads=dict(
        seg=dict(type="SegHead", channels=128, out_stride=4),  # Semantic-FPN fusion at stride 4
        det=dict(type="DetHead", strides=(8, 16, 32), channels=256, num_convs=4),  # FCOS-style tower
        cls=dict(type="ClsHead", dropout=0.2),
        depth=dict(type="DepthHead", channels=128, out_stride=4),  # log-depth at stride 4 (Semantic-FPN fusion)
    ),
)
