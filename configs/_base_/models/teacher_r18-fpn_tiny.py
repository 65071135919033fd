# Tiny CPU teacher for the embedded demo (128 px): timm ResNet-18 + FPN (64 ch) + the four heads.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="TimmBackbone", name="resnet18", out_indices=(1, 2, 3, 4)),  # strides 4, 8, 16, 32
    neck=dict(type="FPN", out_channels=64),
    heads=dict(
        seg=dict(type="SegHead", channels=64, out_stride=4),
        det=dict(type="DetHead", strides=(8, 16, 32), channels=64, num_convs=2),
        cls=dict(type="ClsHead", dropout=0.1),
        depth=dict(type="DepthHead", channels=64, out_stride=4),  # log-depth at stride 4 (Semantic-FPN fusion)
    ),
)
