# COCO 2017 person keypoints: data/coco/annotations/person_keypoints_{train,val}2017.json,
# images in data/coco/{train,val}2017/. The keypoint set (17 names, skeleton) comes from the
# file's person category; the flip pairs (left / right) and the OKS sigmas of COCO person are
# built in (mmdet_like.structures.keypoints.COCO_PERSON). Training drops images without a
# person box (filter_empty_gt).
dataset_type = "CocoDataset"
data_root = "data/coco/"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
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
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=2,
    train=dict(
        type=dataset_type,
        classes=["person"],
        ann_file=data_root + "annotations/person_keypoints_train2017.json",
        img_prefix=data_root + "train2017/",
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        classes=["person"],
        ann_file=data_root + "annotations/person_keypoints_val2017.json",
        img_prefix=data_root + "val2017/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        classes=["person"],
        ann_file=data_root + "annotations/person_keypoints_val2017.json",
        img_prefix=data_root + "val2017/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
evaluation = dict(interval=1, metric=["bbox", "keypoints"])
