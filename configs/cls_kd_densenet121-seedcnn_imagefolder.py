# The original classification recipe: the DenseNet-121 teacher distilled into the SeedConvNet student with
# Hinton KD (T=2, alpha=0.7) on ImageFolder data (data_root/{train,val}/<class>/*.jpg).
#   python tools/train.py configs/teacher_densenet121_imagefolder.py --data-root data/my_images   # once
#   python tools/train.py configs/cls_kd_densenet121-seedcnn_imagefolder.py --data-root data/my_images
_base_ = [
    "_base_/models/student_seedcnn_cls.py",
    "_base_/datasets/imagefolder.py",
    "_base_/schedules/adamw_cosine-24e.py",
    "_base_/default_runtime.py",
]
model = dict(
    _delete_=True,
    type="Distiller",
    student=_base_.model,  # SeedConvNet (4 blocks) + GAP + linear
    teacher_checkpoint="work_dirs/teacher_densenet121_imagefolder/best.pth",  # its config rides in the file
    teacher=None,          # None = rebuild the teacher from the checkpoint's model_config (DenseNet-121)
    tasks=dict(
        cls=dict(alpha=0.7, ratio=1.0,  # L = 0.3 * CE + 0.7 * KD
                 loss=dict(type="LogitKDLoss", temperature=2.0)),
    ),
)
