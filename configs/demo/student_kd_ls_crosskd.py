# CPU demo: logit standardization on every softmax KD term (configs/demo/student_kd_ls.py), with det taught
# through the teacher's predictors (CrossKD, Wang et al., CVPR 2024): the student's det towers go through a
# 1x1 adapter and the teacher's frozen output convs, and the soft loss compares those predictions with the
# teacher's own in student_kd_ls.py's det form (box and objectness as probabilities, the class term as T^2 *
# KL of standardized logits). seg and cls keep their standardized KL on the student's own outputs.
_base_ = "./student_kd_ls.py"
model = dict(
    tasks=dict(
        det=dict(loss=dict(_delete_=True, type="CrossKDLoss",
                           loss=dict(type="DetOutputMSELoss", objectness_weighted=True, probabilities=True,
                                     normalize="teacher_objectness", standardize=True, temperature=2.0))),
    ),
)
