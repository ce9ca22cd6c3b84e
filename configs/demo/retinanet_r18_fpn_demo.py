# Small RetinaNet (half-width ResNet-18, 64-channel FPN on P3-P5, 64-channel head) for the demo
# shapes dataset (`make demo-retinanet`):
#   python tools/make_demo_dataset.py data/demo
#   python tools/train.py configs/demo/retinanet_r18_fpn_demo.py
#   python tools/test.py configs/demo/retinanet_r18_fpn_demo.py \
#       work_dirs/retinanet_r18_fpn_demo/latest.pth --eval bbox
# 128x128 images, 4 classes, trained from scratch (no pretrained weights), CPU-sized.
_base_ = [
    "../_base_/models/retinanet_r50_fpn.py",
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
    # P3-P5 (strides 8-32): the objects are 15-60 px in 128 px images
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, num_outs=3),
    bbox_head=dict(
        num_classes=4,
        in_channels=64,
        feat_channels=64,
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        # anchors of 16-25 px on P3 up to 64-101 px on P5
        anchor_generator=dict(octave_base_scale=2, strides=[8, 16, 32]),
        reg_decoded_bbox=True,
        loss_bbox=dict(_delete_=True, type="GIoULoss", loss_weight=2.0),
    ),
)
test_cfg = dict(max_per_img=50)

dataset_type = "CocoDataset"
data_root = "data/demo/"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
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
data = dict(
    imgs_per_gpu=8,
    workers_per_gpu=1,
    train=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/instances_train.json",
        img_prefix=data_root + "train/",
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/instances_val.json",
        img_prefix=data_root + "val/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        ann_file=data_root + "annotations/instances_val.json",
        img_prefix=data_root + "val/",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
evaluation = dict(interval=16, metric="bbox")

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
total_epochs = 16
checkpoint_config = dict(interval=1)
log_config = dict(interval=10, hooks=[dict(type="TextLoggerHook")])
seed = 0
work_dir = "./work_dirs/retinanet_r18_fpn_demo"
