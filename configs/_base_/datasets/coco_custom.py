# Your own COCO-format dataset (boxes), the template to copy: e.g. to
# configs/_base_/datasets/my_dataset.py, then edit the three marked settings. The json files
# come from your annotation tool's COCO export or from tools/dataset_converters/
# (voc2coco.py, yolo2coco.py, labelme2coco.py; each prints the img_prefix to use). A model
# config (e.g. configs/faster_rcnn_my_dataset.py) then uses it in place of coco_detection.py
# and sets num_classes to the number of classes:
#   _base_ = ["_base_/models/faster_rcnn_r50_fpn.py", "_base_/datasets/my_dataset.py",
#             "_base_/schedules/schedule_1x.py", "_base_/default_runtime.py"]
#   model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))
# Masks (Mask R-CNN): add with_mask=True to LoadAnnotations and "segm" to the metric; the
# dataset refuses that where the json has no segmentation (boxes only).
# Check it before training: python tools/check_dataset.py YOUR_CONFIG
dataset_type = "CocoDataset"
data_root = "data/my_dataset/"  # EDIT: the dataset folder
classes = ("class_a", "class_b", "class_c")  # EDIT: the category names (of the json) to train
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(1333, 800),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=True),
            dict(type="RandomFlip"),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="Pad", size_divisor=32),
            dict(type="PackDetInputs"),
        ],
    ),
]
# EDIT: the annotation files (relative to data_root) and the folder their file_name is
# relative to (the img_prefix a converter printed)
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=2,
    train=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + "annotations/train.json",
        img_prefix=data_root + "images/",
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + "annotations/val.json",
        img_prefix=data_root + "images/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + "annotations/val.json",
        img_prefix=data_root + "images/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
evaluation = dict(interval=1, metric="bbox")
