# CPU demo: configs/demo/student_kd.py plus feature KD (FitNets hints, Romero et al. 2015) on every neck
# level: a 1x1 adapter maps the student's 32-ch FPN maps to the teacher's 64 channels, MSE to the teacher's
# map of the same stride (4, 8, 16, 32).
_base_ = "./student_kd.py"
model = dict(
    feature_kd=[dict(student_level=level, teacher_level=level, loss=dict(type="FeatureKDLoss", mode="mse"),
                     weight=1.0) for level in range(4)],
)
