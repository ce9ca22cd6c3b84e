# Small Keypoint R-CNN (half-width ResNet-18, 64-channel FPN, light heads) for the demo shapes
# dataset with keypoints (the shapes' five named vertices, see tools/make_demo_dataset.py):
#   python tools/make_demo_dataset.py data/demo --keypoints
#   python tools/train.py configs/demo/keypoint_rcnn_r18_fpn_demo.py
#   python tools/test.py configs/demo/keypoint_rcnn_r18_fpn_demo.py \
#       work_dirs/keypoint_rcnn_r18_fpn_demo/latest.pth --eval bbox keypoints
# 128x128 images, 4 classes, trained from scratch (no pretrained weights), CPU-sized.
_base_ = [
    "../_base_/models/keypoint_rcnn_r50_fpn.py",
    "../_base_/default_runtime.py",
]
model = dict(
    pretrained=None,
    backbone=dict(
        depth=18,
        base_channels=32,  # half-width ResNet-18: stages of 32, 64, 128 and 256 channels
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
    ),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, num_outs=5),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        # objects are 15-60 px: anchors of 16, 32, ..., 256 px
        anchor_generator=dict(scales=[4]),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        # 512-wide box FCs: measured 0.44 bbox AP with 256 (6 epochs), 0.66 with 512 (7 epochs)
        bbox_head=dict(in_channels=64, fc_out_channels=512, num_classes=4),
        keypoint_roi_extractor=dict(out_channels=64),
        # 4 convs of 64 (COCO: 8 of 512); heatmaps of 56 x 56 on 14 x 14 RoI features
        keypoint_head=dict(num_keypoints=5, in_channels=64, num_convs=4, conv_out_channels=64),
    ),
)
# Small-data training settings (docs/training.md, "Training on a small dataset"): every
# anchor is assigned, each gt claims its best anchors at any IoU.
train_cfg = dict(
    rpn=dict(sampler=dict(num=128), allowed_border=-1, assigner=dict(min_pos_iou=0.0)),
    rpn_proposal=dict(nms_pre=1000, nms_post=300, max_num=300),
    # 64 RoIs an image (at most 16 positives, the keypoint head's RoIs)
    rcnn=dict(sampler=dict(num=64)),
)
test_cfg = dict(
    rpn=dict(nms_pre=500, nms_post=100, max_num=100),
    rcnn=dict(max_per_img=50),
)

dataset_type = "CocoDataset"
data_root = "data/demo/"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
    dict(type="Resize", img_scale=(128, 128), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(128, 128),
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
# the shapes' keypoints: names and skeleton from the file, flip pairs from the names
# (top_left / top_right, bottom_left / bottom_right); OKS sigmas declared here
keypoint_meta = dict(sigmas=[0.05] * 5)
data = dict(
    imgs_per_gpu=8,
    workers_per_gpu=1,
    train=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/keypoints_train.json",
        keypoint_meta=keypoint_meta,
        img_prefix=data_root + "train/",
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/keypoints_val.json",
        keypoint_meta=keypoint_meta,
        img_prefix=data_root + "val/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/keypoints_val.json",
        keypoint_meta=keypoint_meta,
        img_prefix=data_root + "val/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
# Evaluated after the last epoch only (200 val images: ~15 s on 2 CPU cores); for a short run
# pass e.g. --cfg-options total_epochs=1 evaluation.interval=1.
evaluation = dict(interval=8, metric=["bbox", "keypoints"])

# AdamW, linear warmup then cosine decay per iteration.
optimizer = dict(
    type="AdamW",
    lr=2e-3,
    weight_decay=0.05,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
optimizer_config = dict(grad_clip=dict(max_norm=10, norm_type=2))
lr_config = dict(
    policy="cosine",
    by_epoch=False,
    warmup="linear",
    warmup_iters=100,
    warmup_ratio=0.01,
    min_lr_ratio=0.01,
)
total_epochs = 8
checkpoint_config = dict(interval=1)
log_config = dict(interval=10, hooks=[dict(type="TextLoggerHook")])
seed = 0
work_dir = "./work_dirs/keypoint_rcnn_r18_fpn_demo"
