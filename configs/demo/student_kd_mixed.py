# CPU demo: each task taught by the better of its teachers on this data (benchmarks/quality.py, README
# "Several teachers"): the one-task specialists for seg, det and depth, and the multi-task teacher for cls,
# whose specialist alone does not learn the image label (configs/demo/teacher_cls.py stays near chance).
# Same alphas, ratios and soft losses as student_kd_plain.py.
#   python tools/train.py configs/demo/teacher.py --work-dir work_dirs/demo/teacher
#   python tools/train.py configs/demo/teacher_seg.py --work-dir work_dirs/demo/teacher_seg    # and det, depth
#   python tools/train.py configs/demo/student_kd_mixed.py --work-dir work_dirs/demo/student_kd_mixed
_base_ = "./student_kd_specialists.py"
model = dict(
    teachers=dict(
        _delete_=True,
        seg_t=dict(checkpoint="work_dirs/demo/teacher_seg/best.pth", config=None),
        det_t=dict(checkpoint="work_dirs/demo/teacher_det/best.pth", config=None),
        depth_t=dict(checkpoint="work_dirs/demo/teacher_depth/best.pth", config=None),
        multi_t=dict(checkpoint="work_dirs/demo/teacher/best.pth", config=None),  # teaches cls only
    ),
    tasks=dict(cls=dict(teacher="multi_t")),
)
