# CPU demo: a one-task specialist teacher for seg (semantic segmentation): configs/demo/teacher.py (same backbone,
# width and neck) with only its seg head; one of the four teachers of configs/demo/student_kd_specialists.py.
#   python tools/train.py configs/demo/teacher_seg.py --work-dir work_dirs/demo/teacher_seg
_base_ = "./teacher.py"
model = dict(heads=dict(det=None, cls=None, depth=None))  # heads.<task>=None drops an inherited head
_tasks = ["seg"]  # read only this task's ground truth (the other heads are gone)
train_dataloader = dict(dataset=dict(tasks=_tasks))
val_dataloader = dict(dataset=dict(tasks=_tasks))
test_dataloader = dict(dataset=dict(tasks=_tasks))
