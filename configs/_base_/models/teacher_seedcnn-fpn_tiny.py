# Tiny CPU teacher for the embedded demo: the original recipe's SeedConvNet at full width (32-256 ch, the
# student's 16-128 doubled) + FPN (64 ch) + the four heads (two det tower convs). About 4x the student's
# parameters and FLOPs. Wide-and-shallow on purpose: at 64 px and a few CPU epochs it learns faster than a
# ResNet-18 (whose stride-4 stem discards most of a 64 px image at once; see configs/_base_/models/
# teacher_r18-fpn_tiny.py and the README's results section).
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="SeedConvNet", channels=(32, 64, 128, 256), out_indices=(1, 2, 3)),  # strides 4, 8, 16
    neck=dict(type="FPN", out_channels=64, num_extra_levels=1),  # strides 4, 8, 16, 32
    heads=dict(
        seg=dict(type="SegHead", channels=64, out_stride=4),
        det=dict(type="DetHead", strides=(8, 16, 32), channels=64, num_convs=2),
        cls=dict(type="ClsHead", dropout=0.1),
        depth=dict(type="DepthHead", channels=64, out_stride=4),  # log-depth at stride 4 (Semantic-FPN fusion)
    ),
)
