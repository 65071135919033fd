# CPU demo: the tiny teacher (ResNet-18 + FPN, three heads) on the embedded synthetic set, 128 px.
_base_ = [
    "../_base_/models/teacher_r18-fpn_tiny.py",
    "../_base_/datasets/synthetic.py",
    "../_base_/schedules/adamw_cosine-demo.py",
    "../_base_/default_runtime.py",
]
