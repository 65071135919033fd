# CPU demo: configs/demo/student_kd_plain.py with CrossKD (Wang et al., CVPR 2024) for det and its analogue for seg:
# the student's det towers (reg, cls; 32 channels) go through a 1x1 adapter to the teacher's 64 channels and
# then through the teacher's frozen output convs; the soft loss compares those cross-head predictions with
# the teacher's own, in the form student_kd_plain.py uses on the student's predictions. For seg the fused
# Semantic-FPN map goes through the teacher's 1x1 classifier, compared by the same pixelwise KL.
_base_ = "./student_kd_plain.py"
model = dict(
    tasks=dict(
        seg=dict(loss=dict(_delete_=True, type="CrossKDLoss", loss=dict(type="PixelwiseKLLoss", temperature=2.0))),
        det=dict(loss=dict(_delete_=True, type="CrossKDLoss",
                           loss=dict(type="DetOutputMSELoss", objectness_weighted=True, probabilities=True,
                                     normalize="teacher_objectness"))),
    ),
)
