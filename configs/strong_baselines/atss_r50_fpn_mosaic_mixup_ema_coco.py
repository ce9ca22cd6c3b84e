# ATSS, ResNet-50-FPN (ImageNet weights) with YOLOX's augmentation recipe, COCO: a recipe
# config of this project (mmdetection has no such ATSS config; the pipeline, the mixing
# wrapper, the batch resizing and the hooks are those of its configs/yolox/).
#
# Each training image is a Mosaic of four (640 x 640 quadrants on a 1280 x 1280 canvas), then
# a RandomAffine that cuts it back to 640 x 640 (border = -320) with a scale of 0.1-2, a
# MixUp with a fifth image, YOLOX's HSV jitter and a flip, resized to fit 640 x 640 and
# padded to a square of 114s. MultiImageMixDataset gives Mosaic and MixUp their other images.
# Every 10 batches a new input size is drawn (480-800 px, multiples of 32) and each batch is
# resized to it on the device (data.batch_augments, BatchSyncRandomResize), the same on
# every rank. An EMA of the weights (EMAHook) is kept and evaluated; for the last 6 epochs
# the pipeline switches to plain resize-and-flip (PipelineSwitchHook), as YOLOX and RTMDet
# stop mosaic and mixup at the end.
#
# 36 epochs, SGD at LR 0.01 for 16 images a batch (8 processes x 2 of mmdetection's ATSS;
# here 8 x 8 = 64 at LR 0.04 would be the linear scaling), steps at epochs 27 and 33.
_base_ = [
    "../_base_/models/atss_r50_fpn.py",
    "../_base_/default_runtime.py",
]
dataset_type = "CocoDataset"
data_root = "data/coco/"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
_img_scale = (640, 640)  # (h, w) of a mosaic quadrant and of the output
train_pipeline = [
    dict(type="Mosaic", img_scale=_img_scale, pad_val=114.0),
    dict(
        type="RandomAffine",
        scaling_ratio_range=(0.1, 2),
        border=(-_img_scale[0] // 2, -_img_scale[1] // 2),
    ),
    dict(type="MixUp", img_scale=_img_scale, ratio_range=(0.8, 1.6), pad_val=114.0),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Resize", img_scale=_img_scale, keep_ratio=True),
    dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="PackDetInputs"),
]
# the last epochs: no mosaic, affine or mixup
_train_pipeline_stage2 = [
    dict(type="Resize", img_scale=_img_scale, keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=_img_scale,
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=True),
            dict(type="RandomFlip"),
            dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="PackDetInputs"),
        ],
    ),
]
data = dict(
    imgs_per_gpu=8,
    workers_per_gpu=4,
    train=dict(
        type="MultiImageMixDataset",
        dataset=dict(
            type=dataset_type,
            ann_file=data_root + "annotations/instances_train2017.json",
            img_prefix=data_root + "train2017/",
            pipeline=[
                dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotations", with_bbox=True),
            ],
            filter_empty_gt=False,
        ),
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/instances_val2017.json",
        img_prefix=data_root + "val2017/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/instances_val2017.json",
        img_prefix=data_root + "val2017/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    batch_augments=[
        dict(
            type="BatchSyncRandomResize", random_size_range=(480, 800), size_divisor=32, interval=10
        ),
    ],  # fmt: skip
)
evaluation = dict(interval=1, metric="bbox")

optimizer = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=1.0 / 3,
                 step=[27, 33])  # fmt: skip
total_epochs = 36
custom_hooks = [
    dict(type="PipelineSwitchHook", switch_epoch=30, switch_pipeline=_train_pipeline_stage2),
    dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002, update_buffers=True,
         priority=49),
]  # fmt: skip
