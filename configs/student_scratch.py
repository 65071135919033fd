# Student at full size (MobileNetV3-Large + thin FPN) trained on ground truth only: the baseline that
# configs/multitask_kd.py must beat. Same data and schedule as configs/teacher.py.
_base_ = [
    "_base_/models/student_mbv3-fpn.py",
    "_base_/datasets/synthetic.py",
    "_base_/schedules/adamw_cosine-24e.py",
    "_base_/default_runtime.py",
]
train_dataloader = dict(batch_size=32, num_workers=8)  # per GPU
val_dataloader = dict(num_workers=8)
