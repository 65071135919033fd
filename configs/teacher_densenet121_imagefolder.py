# Teacher of the classification recipe: DenseNet-121 (cls head only) on ImageFolder data.
# Its best.pth is what configs/cls_kd_densenet121-seedcnn_imagefolder.py distils from.
#   python tools/train.py configs/teacher_densenet121_imagefolder.py --data-root data/my_images
_base_ = [
    "_base_/models/teacher_densenet121_cls.py",
    "_base_/datasets/imagefolder.py",
    "_base_/schedules/adamw_cosine-24e.py",
    "_base_/default_runtime.py",
]
