# Mask R-CNN for a small COCO-format dataset (a few hundred to a few thousand images), trained
# from scratch: full-width ResNet-18 with batch norm trained, a 64-channel FPN, light heads,
# images of at most 320 px, AdamW with linear warmup then cosine decay per iteration.
# Set the paths (data_root, ann_file, img_prefix) and num_classes (box and mask heads), or let
# the benchmark set them. Same-budget accuracy against torchvision's Mask R-CNN of the same
# sizes, trained alike on the same images:
#   python tools/benchmark_accuracy.py configs/small_data/mask_rcnn_r18_fpn_small.py \
#       --data data/small/annotations/train.json data/small/annotations/val.json \
#       data/small/images --iters 2000 --out-json work_dirs/benchmark_accuracy/small.json
# (it reads num_classes and the class names from the annotation file; for a quick run with
# smaller images add --cfg-options data.train.pipeline.2.img_scale="(128,128)"
# data.val.pipeline.1.img_scale="(128,128)"). Training alone:
#   python tools/train.py configs/small_data/mask_rcnn_r18_fpn_small.py
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn.py",
    "../_base_/default_runtime.py",
]
model = dict(
    pretrained=None,
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
    ),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64, num_outs=5),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=1),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64, num_classes=1),
    ),
)
# CPU-sized sampling: 1000 proposals an image in training and testing, 128 RoIs an image.
# Small-data settings (docs/training.md, "Training on a small dataset"): every anchor is
# assigned (allowed_border=-1), each gt claims its best anchors at any IoU (min_pos_iou=0),
# soft mask targets (mask_target_binarize=False).
train_cfg = dict(
    rpn=dict(allowed_border=-1, assigner=dict(min_pos_iou=0.0)),
    rpn_proposal=dict(nms_pre=1000, nms_post=1000, max_num=1000),
    rcnn=dict(sampler=dict(num=128), mask_target_binarize=False),
)
test_cfg = dict(rpn=dict(nms_pre=1000, nms_post=1000, max_num=1000))

dataset_type = "CocoDataset"
data_root = "data/small/"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Resize", img_scale=(320, 320), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(320, 320),
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
    imgs_per_gpu=4,
    workers_per_gpu=1,
    train=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/train.json",
        img_prefix=data_root + "images/",
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/val.json",
        img_prefix=data_root + "images/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/val.json",
        img_prefix=data_root + "images/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
evaluation = dict(interval=12, metric=["bbox", "segm"])

# AdamW without decay on norms and biases; no gradient clipping.
optimizer = dict(
    type="AdamW",
    lr=2e-3,
    weight_decay=1e-4,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
optimizer_config = dict(grad_clip=None)
# Linear warmup over 100 iterations, then cosine decay per iteration to 1% of the LR.
lr_config = dict(
    policy="cosine",
    by_epoch=False,
    warmup="linear",
    warmup_iters=100,
    warmup_ratio=0.01,
    min_lr_ratio=0.01,
)
total_epochs = 12
log_config = dict(interval=20, hooks=[dict(type="TextLoggerHook")])
seed = 0
work_dir = "./work_dirs/mask_rcnn_r18_fpn_small"
