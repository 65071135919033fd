# CPU demo: a one-task specialist teacher for depth (depth): configs/demo/teacher.py (same backbone,
# width and neck) with only its depth head; one of the four teachers of configs/demo/student_kd_specialists.py.
#   python tools/train.py configs/demo/teacher_depth.py --work-dir work_dirs/demo/teacher_depth
_base_ = "./teacher.py"
model = dict(heads=dict(seg=None, det=None, cls=None))  # heads.<task>=None drops an inherited head
_tasks = ["depth"]  # read only this task's ground truth (the other heads are gone)
train_dataloader = dict(dataset=dict(tasks=_tasks))
val_dataloader = dict(dataset=dict(tasks=_tasks))
test_dataloader = dict(dataset=dict(tasks=_tasks))
