# Multi-task KD at full size: the ResNet-50-FPN teacher (configs/teacher.py) distilled into the
# MobileNetV3-FPN student on seg + det + cls + depth, on the embedded synthetic set by default.
# Per task: L_t = (1 - alpha) * hard + alpha * soft;  L = sum_t ratio * L_t + feature KD terms.
# A batch without a task's labels trains that task on the teacher alone (total = soft).
#   python tools/train.py configs/teacher.py                  # once: writes work_dirs/teacher/best.pth
#   python tools/train.py configs/multitask_kd.py             # compare with configs/student_scratch.py
_base_ = [
    "_base_/models/student_mbv3-fpn.py",
    "_base_/datasets/synthetic.py",
    "_base_/schedules/adamw_cosine-24e.py",
    "_base_/default_runtime.py",
]
model = dict(
    _delete_=True,
    type="Distiller",
    student=_base_.model,                            # MobileNetV3-Large + 64-ch FPN, det strides 8/16/32
    teacher_checkpoint="work_dirs/teacher/best.pth",  # trained by configs/teacher.py (ResNet-50 + FPN)
    teacher=None,                                    # None = rebuild from the checkpoint's own model_config
    # The demo's default recipe (configs/demo/student_kd.py), chosen there on the val split (README, Results,
    # "Stronger distillation losses"; not re-tuned at this size): logit standardization at T=1 (Sun et al.,
    # CVPR 2024) on seg, det (class term) and cls, and PKD feature KD on the four neck levels (feature_kd
    # below). standardize=False gives each loss's plain form; feature_kd=[] drops feature KD.
    tasks=dict(
        seg=dict(alpha=0.5, ratio=1.0,               # pixelwise KL over kept (non-ignore) pixels
                 loss=dict(type="PixelwiseKLLoss", temperature=1.0, standardize=True)),
        det=dict(alpha=0.5, ratio=1.0,               # output MSE, weighted by teacher objectness
                 loss=dict(type="DetOutputMSELoss", box=1.0, obj=1.0, cls=1.0, objectness_weighted=True,
                           probabilities=True,  # box and obj as probabilities, as in the paper
                           normalize="teacher_objectness",  # sums / teacher's object count, like the hard loss
                           standardize=True, temperature=1.0)),  # classes: T^2 * KL of standardized logits
        cls=dict(alpha=0.7, ratio=0.5,               # Hinton KD on the image-level logits
                 loss=dict(type="LogitKDLoss", temperature=1.0, standardize=True)),
        depth=dict(alpha=0.5, ratio=1.0,             # L1 between log-depth maps (a relative error per pixel)
                   loss=dict(type="DepthKDLoss", mode="l1")),
    ),
    # PKD (Cao et al. 2022): each of the student's 64-ch FPN levels (strides 4-32) through a 1x1 adapter to the
    # teacher's 256 channels, both maps standardized per channel, then MSE / 2 (free of the feature scale)
    feature_kd=[dict(student_level=level, teacher_level=level, loss=dict(type="FeatureKDLoss", mode="pearson"),
                     weight=1.0) for level in range(4)],
)
train_dataloader = dict(batch_size=32, num_workers=8)  # per GPU, as in configs/student_scratch.py
val_dataloader = dict(num_workers=8)
