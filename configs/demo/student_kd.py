# CPU demo: the demo's default KD recipe: student_kd_plain.py's alphas and losses with logit standardization
# (Sun et al., CVPR 2024) on every softmax KD term at T=1: seg per pixel over classes, cls per image, det on
# its class term (a T^2 * KL per location; box and objectness keep the probability MSE); depth keeps its L1.
# Chosen on the val split, seed 0 (benchmarks/results/ablations_stronger_kd.json; README, Results, "Stronger
# distillation losses"): against the plain losses seg mIoU +2.4, det mAP +2.4, cls top-1 -1.0 (within the 500-image split's
# noise), better than LS at T=2; DKD + CWD, CrossKD (det + seg, or det on top of LS) and LS with a KD weight of
# 3 were each worse on seg or det.
_base_ = "./student_kd_plain.py"
model = dict(
    tasks=dict(
        seg=dict(loss=dict(standardize=True, temperature=1.0)),
        det=dict(loss=dict(standardize=True, temperature=1.0)),
        cls=dict(loss=dict(standardize=True, temperature=1.0)),
    ),
)
