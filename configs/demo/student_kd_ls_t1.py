# CPU demo: the plain output-KD recipe (student_kd_plain.py) with logit standardization (Sun et al., CVPR 2024)
# on every softmax KD term at T=1: seg per pixel over classes, cls per image, det on its class term (a T^2 *
# KL per location; box and objectness keep the probability MSE); depth keeps its L1. The best output-level
# combination on the val split (seed 0; README, Results, "Stronger distillation losses"): against the plain
# losses seg mIoU +2.4, det mAP +2.4, cls top-1 -1.0 (within the 500-image split's noise), ahead of LS at
# T=2; DKD + CWD, CrossKD (det + seg, or det on top of LS) and LS with a KD weight of 3 were each worse on seg
# or det. The demo's default, configs/demo/student_kd.py, adds PKD feature KD to it.
_base_ = "./student_kd_plain.py"
model = dict(
    tasks=dict(
        seg=dict(loss=dict(standardize=True, temperature=1.0)),
        det=dict(loss=dict(standardize=True, temperature=1.0)),
        cls=dict(loss=dict(standardize=True, temperature=1.0)),
    ),
)
