# CPU demo: configs/demo/student_kd_plain.py with the field's replacements for the two KL terms: Decoupled KD for cls
# (Zhao et al., CVPR 2022: alpha * TCKD + beta * NCKD at T=4, the paper's CIFAR-100 setting) and channel-wise
# distillation for seg (Shu et al., ICCV 2021: per class channel, KL between spatial softmaxes at T=4).
_base_ = "./student_kd_plain.py"
model = dict(
    tasks=dict(
        seg=dict(loss=dict(_delete_=True, type="CWDLoss", temperature=4.0)),
        cls=dict(loss=dict(_delete_=True, type="DKDLoss", alpha=1.0, beta=8.0, temperature=4.0)),
    ),
)
