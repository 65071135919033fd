# Student: timm MobileNetV3-Large + thin FPN (64 ch) + light heads; same det strides as the teacher.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="TimmBackbone", name="mobilenetv3_large_100", out_indices=(1, 2, 3, 4)),  # strides 4..32
    neck=dict(type="FPN", out_channels=64),
    heads=dict(
        seg=dict(type="SegHead", channels=64, out_stride=4),
        det=dict(type="DetHead", strides=(8, 16, 32), channels=64, num_convs=2),
        cls=dict(type="ClsHead", dropout=0.2),
        depth=dict(type="DepthHead", channels=64, out_stride=4),  # log-depth at stride 4 (Semantic-FPN fusion)
    ),
)
