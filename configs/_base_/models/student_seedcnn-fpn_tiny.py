# Tiny CPU student for the embedded demo: the original recipe's four-block SeedConvNet (half width) + thin
# FPN with one extra level so that its det strides (8, 16, 32) match the teacher's.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="SeedConvNet", channels=(16, 32, 64, 128), out_indices=(1, 2, 3)),  # strides 4, 8, 16
    neck=dict(type="FPN", out_channels=32, num_extra_levels=1),  # strides 4, 8, 16, 32
    heads=dict(
        seg=dict(type="SegHead", channels=32, out_stride=4),
        det=dict(type="DetHead", strides=(8, 16, 32), channels=32, num_convs=1),
        cls=dict(type="ClsHead", dropout=0.1),
        depth=dict(type="DepthHead", channels=32, out_stride=4),  # log-depth at stride 4 (Semantic-FPN fusion)
    ),
)
