# CPU demo: the tiny teacher (full-width SeedConvNet + FPN, four heads) on the embedded synthetic set, 64 px.
_base_ = [
    "../_base_/models/teacher_seedcnn-fpn_tiny.py",
    "../_base_/datasets/synthetic_64px.py",
    "../_base_/schedules/adamw_cosine-demo.py",
    "../_base_/default_runtime.py",
]
