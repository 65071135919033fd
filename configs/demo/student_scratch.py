# CPU demo: the tiny student (SeedConvNet + thin FPN) trained on ground truth only: the baseline KD must beat.
_base_ = [
    "../_base_/models/student_seedcnn-fpn_tiny.py",
    "../_base_/datasets/synthetic_64px.py",
    "../_base_/schedules/adamw_cosine-demo.py",
    "../_base_/default_runtime.py",
]
