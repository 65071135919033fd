# CPU demo: the demo's default recipe (configs/demo/student_kd.py) plus PKD feature KD on every neck level,
# as configs/demo/student_kd_feat.py adds it to the plain recipe (a 1x1 adapter from the student's 32-ch FPN
# maps to the teacher's 64; both maps standardized per channel, then MSE / 2; Cao et al. 2022).
_base_ = "./student_kd.py"
model = dict(
    feature_kd=[dict(student_level=level, teacher_level=level, loss=dict(type="FeatureKDLoss", mode="pearson"),
                     weight=1.0) for level in range(4)],
)
