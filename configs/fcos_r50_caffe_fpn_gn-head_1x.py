# FCOS, caffe-style ResNet-50-FPN, GroupNorm head, 1x schedule (12 epochs), COCO, as
# mmdetection's fcos_r50_caffe_fpn_gn-head_1x: LR 0.01 for 16 images a batch with doubled
# bias LR and no bias decay, constant warmup, no gradient clipping. The caffe-style ImageNet
# weights are a local file: put them at checkpoints/resnet50_caffe.pth (see docs/models.md).
_base_ = [
    "_base_/models/fcos_r50_caffe_fpn_gn-head.py",
    "_base_/datasets/coco_detection.py",
    "_base_/schedules/schedule_1x.py",
    "_base_/default_runtime.py",
]
optimizer = dict(lr=0.01, paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0))
optimizer_config = dict(_delete_=True)
lr_config = dict(warmup="constant", warmup_iters=500, warmup_ratio=1.0 / 3)
img_norm_cfg = dict(mean=[102.9801, 115.9465, 122.7717], std=[1.0, 1.0, 1.0], to_rgb=False)
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
data = dict(
    train=dict(pipeline=train_pipeline),
    val=dict(pipeline=test_pipeline),
    test=dict(pipeline=test_pipeline),
)
