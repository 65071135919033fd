# CPU demo: configs/demo/student_kd_plain.py with logit standardization (Sun et al., CVPR 2024) on every softmax KD
# term: each logit vector of teacher and student becomes (z - mean) / (std + 1e-7) before the KL at T, times
# T^2. seg per pixel over classes, cls per image, det on its class term (then a KL per location at T instead
# of the probability MSE; box and objectness terms unchanged). Depth has no class logits and keeps its L1.
_base_ = "./student_kd_plain.py"
# loss_weight scales each soft loss inside alpha's mix (Sun et al. raise the KD weight: standardized logits
# have std 1, so at T=2 the softmaxes are flat and the KL small); 1.0 = the KD recipe's scale.
model = dict(
    tasks=dict(
        seg=dict(loss=dict(standardize=True, loss_weight=1.0)),
        det=dict(loss=dict(standardize=True, temperature=2.0, loss_weight=1.0)),
        cls=dict(loss=dict(standardize=True, loss_weight=1.0)),
    ),
)
