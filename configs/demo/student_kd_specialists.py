# CPU demo: configs/demo/student_kd_plain.py with four one-task specialist teachers instead of one multi-task teacher:
# each task is taught by the teacher trained on it alone (configs/demo/teacher_<task>.py, the same width as
# configs/demo/teacher.py). Same alphas, ratios and soft losses as student_kd_plain.py; every teacher runs once per
# batch, frozen, under no_grad, and none is saved with the student.
#   python tools/train.py configs/demo/teacher_seg.py --work-dir work_dirs/demo/teacher_seg    # and det, cls, depth
#   python tools/train.py configs/demo/student_kd_specialists.py --work-dir work_dirs/demo/student_kd_specialists
_base_ = "./student_kd_plain.py"
model = dict(
    teacher_checkpoint=None,  # the one-teacher form is replaced by named teachers
    teachers=dict(
        seg_t=dict(checkpoint="work_dirs/demo/teacher_seg/best.pth", config=None),  # None: the checkpoint's model
        det_t=dict(checkpoint="work_dirs/demo/teacher_det/best.pth", config=None),
        cls_t=dict(checkpoint="work_dirs/demo/teacher_cls/best.pth", config=None),
        depth_t=dict(checkpoint="work_dirs/demo/teacher_depth/best.pth", config=None),
    ),
    tasks=dict(  # alpha, ratio and loss inherited from student_kd_plain.py; each task names its teacher
        seg=dict(teacher="seg_t"),
        det=dict(teacher="det_t"),
        cls=dict(teacher="cls_t"),
        depth=dict(teacher="depth_t"),
    ),
)
