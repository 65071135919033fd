# CPU demo: configs/demo/student_kd_plain.py plus feature KD on every neck level: a 1x1 adapter maps the student's
# 32-ch FPN maps to the teacher's 64 channels, compared with the teacher's map of the same stride (4, 8, 16,
# 32) in PKD's Pearson form (Cao et al. 2022: both maps standardized per channel, then MSE / 2), which does
# not depend on the teacher's feature magnitude. FitNets' plain MSE (mode="mse", Romero et al. 2015) made
# these terms 2-3x the task losses and the student worse than output KD alone (README, Results).
_base_ = "./student_kd_plain.py"
model = dict(
    feature_kd=[dict(student_level=level, teacher_level=level, loss=dict(type="FeatureKDLoss", mode="pearson"),
                     weight=1.0) for level in range(4)],
)
