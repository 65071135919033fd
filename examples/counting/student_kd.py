# The demo student distilled from the counting teacher (examples/counting/teacher.py) on five tasks.
#   python tools/train.py examples/counting/student_kd.py --work-dir work_dirs/counting/student_kd \
#       --cfg-options model.teacher_checkpoint=work_dirs/counting/teacher/best.pth
_base_ = "../../configs/demo/student_kd.py"
custom_imports = dict(imports=["examples.counting.counting"], allow_failed_imports=False)

model = dict(
    student=dict(heads=dict(count=dict(type="CountHead", hidden=32))),
    teacher_checkpoint="work_dirs/counting/teacher/best.pth",
    tasks=dict(count=dict(alpha=0.5, ratio=1.0, loss=dict(type="CountKDLoss"))),  # L = 0.5 hard + 0.5 soft
)
_count_target = dict(targets=dict(count=dict(type="ObjectCountTarget")))
train_dataloader = dict(dataset=_count_target)
val_dataloader = dict(dataset=_count_target)
test_dataloader = dict(dataset=_count_target)
metrics = dict(count=dict(type="CountMetric"))
drawers = dict(count=dict(type="CountDrawer"))
