# GFL, ResNet-50-FPN, multi-scale training (shorter side drawn from 480-800, longer side at
# most 1333), 2x schedule (24 epochs, LR steps after 16 and 22), COCO, as mmdetection's
# gfl_r50_fpn_mstrain_2x_coco. Testing at 1333 x 800.
_base_ = "./gfl_r50_fpn_1x_coco.py"
lr_config = dict(step=[16, 22])
total_epochs = 24
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(
        type="Resize",
        img_scale=[(1333, 480), (1333, 800)],
        multiscale_mode="range",
        keep_ratio=True,
    ),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
data = dict(train=dict(pipeline=train_pipeline))
