# Pascal VOC 2007 + 2012 (20 classes): trained on VOC2007 trainval + VOC2012 trainval
# (repeated 3 times an epoch), tested on VOC2007 test with the VOC mAP (IoU 0.5). The data
# as the VOCdevkit archives unpack:
#   data/VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main/{trainval,test}.txt}
#   data/VOCdevkit/VOC2012/{Annotations,JPEGImages,ImageSets/Main/trainval.txt}
# Models for it need num_classes=20.
dataset_type = "VOCDataset"
data_root = "data/VOCdevkit/"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(1000, 600), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(1000, 600),
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
        type="RepeatDataset",
        times=3,
        dataset=dict(
            type="ConcatDataset",
            datasets=[
                dict(
                    type=dataset_type,
                    ann_file=data_root + "VOC2007/ImageSets/Main/trainval.txt",
                    img_prefix=data_root + "VOC2007/",
                    pipeline=train_pipeline,
                ),
                dict(
                    type=dataset_type,
                    ann_file=data_root + "VOC2012/ImageSets/Main/trainval.txt",
                    img_prefix=data_root + "VOC2012/",
                    pipeline=train_pipeline,
                ),
            ],
        ),
    ),
    val=dict(
        type=dataset_type,
        ann_file=data_root + "VOC2007/ImageSets/Main/test.txt",
        img_prefix=data_root + "VOC2007/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        ann_file=data_root + "VOC2007/ImageSets/Main/test.txt",
        img_prefix=data_root + "VOC2007/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
evaluation = dict(interval=1, metric="mAP")
