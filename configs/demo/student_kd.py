# CPU demo: the demo's default KD recipe, the best of issue #17 on the val split (seed 0; README, Results,
# "Stronger distillation losses"): logit standardization at T=1 on the seg, det (class term) and cls soft
# losses (configs/demo/student_kd_ls_t1.py) plus PKD feature KD on every neck level (Cao et al. 2022: a 1x1
# adapter maps the student's 32-ch FPN maps to the teacher's 64, both standardized per channel, then MSE / 2),
# which added seg mIoU +3.1, det mAP +2.0, cls top-1 +3.0 on val to the output losses alone, for about 1.37x
# their training time (12.6 vs 9.2 min a 12-epoch benchmark run). configs/demo/student_kd_plain.py is the
# plain recipe before #17.
_base_ = "./student_kd_ls_t1.py"
model = dict(
    feature_kd=[dict(student_level=level, teacher_level=level, loss=dict(type="FeatureKDLoss", mode="pearson"),
                     weight=1.0) for level in range(4)],
)
