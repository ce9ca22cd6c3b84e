# Mask R-CNN, Swin-T-FPN, multi-scale training, 3x schedule (36 epochs, LR x0.1 after epochs
# 27 and 33), COCO, as mmdetection's configs/swin/mask_rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py
# (model, optimizer and warmup: mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py).
# Augmentation: mmdetection's (DETR's) picks per image one of two policies (AutoAugment):
#   (a) the shorter side resized to one of 480, 512, ..., 800 (the longer at most 1333);
#   (b) the shorter side to one of 400, 500, 600, a random crop with sides drawn from 384-600
#       (RandomCrop crop_type="absolute_range", allow_negative_crop=True), then (a)'s resize
#       again (override=True).
# Our pipeline has no AutoAugment (a random choice between pipelines), no RandomCrop of a
# drawn size and no second Resize of a resized image: this config trains with (a) alone,
# after the flip. Testing at 1333 x 800, as mmdetection.
_base_ = "./mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py"
lr_config = dict(step=[27, 33])
total_epochs = 36
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(
        type="Resize",
        img_scale=[
            (1333, 480),
            (1333, 512),
            (1333, 544),
            (1333, 576),
            (1333, 608),
            (1333, 640),
            (1333, 672),
            (1333, 704),
            (1333, 736),
            (1333, 768),
            (1333, 800),
        ],
        multiscale_mode="value",
        keep_ratio=True,
    ),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
data = dict(train=dict(pipeline=train_pipeline))
