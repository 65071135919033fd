# PASCAL VOC 2012, segmentation split (1464 train / 1449 val images with boxes and class masks), converted by
#   python tools/dataset_converters/voc.py data/VOCdevkit/VOC2012 --out data/voc
# into annotations/instances_{train,val}.json, images/{split}/*.jpg, masks/{split}/<stem>.png; then
#   python tools/train.py configs/voc/teacher_r50-fpn.py --data-root data/voc
# Tasks: class masks (21 classes: background + the 20 VOC classes; 255 void is ignored), boxes (20 classes;
# difficult objects are iscrowd=1, ignored by training and COCOeval) and multi-hot image classes from the
# objects' categories (image_labels="instances"). Input and augmentation as the COCO config: 512 px letterbox.
_base_ = "./coco.py"
data_root = "data/voc"


def _split(name):  # one split of the converted layout (a function: not a config key)
    return dict(
        data_root=data_root,
        ann_file=f"annotations/instances_{name}.json",
        img_dir=f"images/{name}",
        targets=dict(seg=dict(type="SemanticMaskTarget", mask_dir=f"masks/{name}")),  # the VOC class PNGs
        image_labels="instances",  # image classes = the categories of the image's objects (multi-hot)
    )


train_dataloader = dict(dataset=_split("train"))
val_dataloader = dict(dataset=_split("val"))
test_dataloader = dict(dataset=_split("val"))  # VOC's test labels are not public: "test" reads the val split
