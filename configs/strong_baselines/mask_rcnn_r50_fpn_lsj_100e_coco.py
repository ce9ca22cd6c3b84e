# Mask R-CNN, ResNet-50-FPN trained from scratch with large-scale jitter (LSJ) for 100 epochs,
# COCO: mmdetection's strong baseline configs/strong_baselines/
# mask_rcnn_r50_fpn_syncbn-all_rpn-2conv_lsj_100e_coco.py (after Detectron2's new baselines).
#
# LSJ: each image is resized to fit 1024 x 1024 times a ratio drawn from 0.1-2.0
# (RandomResize), a window of at most 1024 x 1024 is cropped from it with the boxes recomputed
# from the cropped masks (RandomCrop), instances left without a box are dropped
# (FilterAnnotations), and the result is padded to exactly 1024 x 1024 (Pad(size=...)).
# SyncBN everywhere (backbone, FPN, the 4conv1fc box head, the mask head), no frozen stage,
# no pretrained weights. The schedule is 25 epochs of the train set repeated 4 times (100
# epochs), SGD at LR 0.1 for 64 images a batch (32 processes x 2), steps at 88 and 96 epochs.
#
# Differences from mmdetection's: its RPN head has 2 shared convs (rpn_head.num_convs=2), ours
# has one (RPNHead has no num_convs); its heads use MMSyncBN (SyncBN that accepts empty
# batches), ours torch's SyncBatchNorm. On one process SyncBN works as BN.
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn.py",
    "../_base_/default_runtime.py",
]
_norm_cfg = dict(type="SyncBN", requires_grad=True)
model = dict(
    pretrained=None,  # trained from scratch
    backbone=dict(frozen_stages=-1, norm_eval=False, norm_cfg=_norm_cfg),
    neck=dict(norm_cfg=_norm_cfg),
    roi_head=dict(
        bbox_head=dict(type="Shared4Conv1FCBBoxHead", conv_out_channels=256, norm_cfg=_norm_cfg),
        mask_head=dict(norm_cfg=_norm_cfg),
    ),
)

dataset_type = "CocoDataset"
data_root = "data/coco/"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
_image_size = (1024, 1024)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomResize", scale=_image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(
        type="RandomCrop",
        crop_type="absolute_range",
        crop_size=_image_size,
        recompute_bbox=True,
        allow_negative_crop=True,
    ),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size=_image_size),
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
        type="RepeatDataset",
        times=4,
        dataset=dict(
            type=dataset_type,
            ann_file=data_root + "annotations/instances_train2017.json",
            img_prefix=data_root + "train2017/",
            pipeline=train_pipeline,
        ),
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
)
evaluation = dict(interval=4, metric=["bbox", "segm"])

optimizer = dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=0.00004)
optimizer_config = dict(grad_clip=None)
lr_config = dict(
    policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.067, step=[22, 24]
)
total_epochs = 25
