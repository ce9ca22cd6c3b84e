# Mask R-CNN, ConvNeXt-T-FPN, multi-scale training, 3x schedule (36 epochs), mixed precision,
# COCO, as mmdetection's configs/convnext/mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco.py
# (mmdetection 3.x: mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py), on our TimmBackbone:
# - backbone: timm's convnext_tiny (depths 3-3-9-3, drop path 0.4, layer scale starting at 1.0
#   as mmdetection's layer_scale_init_value=1.0), the four levels at strides 4-32 (96, 192,
#   384, 768 channels; the FPN takes them from the backbone), each through a LayerNorm
#   (out_norm, eps 1e-6: mmcls's backbone.norm0..3). Weights: timm's fb_in1k, the ConvNeXt
#   authors' ImageNet-1k release in its EMA form; mmdetection starts from the same release
#   without EMA (convnext-tiny_3rdparty_32xb128-noema_in1k): for those, save the official
#   convnext_tiny_1k_224.pth in timm's names and set pretrained to the file.
# - AdamW, LR 1e-4, weight decay 0.05 (none on norms, biases, layer scales), layer-wise LR
#   decay 0.95 over 6 layers (LearningRateDecayOptimizerConstructor: our num_layers is
#   mmdetection's; for ConvNeXt-T's 18 blocks it gives mmdetection's layer ids, the stem
#   lr x 0.95^7, stage 1 x 0.95^6, ..., stage 4 x 0.95, neck and heads the full LR); linear
#   warmup over 1000 iterations from 0.001, LR x0.1 after epochs 27 and 33; no gradient
#   clipping; 2 images a GPU (16 over 8 GPUs).
# - float16 autocast with a dynamic loss scale (mmdetection's starts at 512, torch's
#   GradScaler at 65536: the first few steps may overflow and be skipped while it halves).
# - augmentation: mmdetection's (DETR's) picks per image one of two policies (AutoAugment):
#   (a) the shorter side resized to one of 480, 512, ..., 800 (the longer at most 1333);
#   (b) the shorter side to one of 400, 500, 600, a random crop with sides drawn from 384-600
#   (RandomCrop crop_type="absolute_range", allow_negative_crop=True), then (a)'s resize
#   again. Our pipeline has no AutoAugment, no RandomCrop of a drawn size and no second
#   Resize of a resized image: this config trains with (a) alone, after the flip.
# mmdetection has no ConvNeXt-S or -B Mask R-CNN config (its ConvNeXt-S model is a Cascade
# Mask R-CNN with 4conv1fc GIoU box heads, which our RoI box heads cannot express); ours,
# mask_rcnn_convnext-{s,b}_p4_w7_fpn_fp16_ms-crop_3x_coco.py, are this one with their backbones.
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn.py",
    "../_base_/datasets/coco_instance.py",
    "../_base_/schedules/schedule_1x.py",
    "../_base_/default_runtime.py",
]
model = dict(
    pretrained=None,  # the backbone's own: timm's weights
    backbone=dict(
        _delete_=True,
        type="TimmBackbone",
        model_name="convnext_tiny.fb_in1k",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        out_norm=dict(type="LN", eps=1e-6),
        model_kwargs=dict(drop_path_rate=0.4, ls_init_value=1.0),
    ),
    neck=dict(_delete_=True, type="FPN", out_channels=256, num_outs=5),
)
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
optimizer = dict(
    _delete_=True,
    type="AdamW",
    lr=0.0001,
    betas=(0.9, 0.999),
    weight_decay=0.05,
    constructor="LearningRateDecayOptimizerConstructor",
    paramwise_cfg=dict(decay_rate=0.95, decay_type="layer_wise", num_layers=6),
)
optimizer_config = dict(_delete_=True)
lr_config = dict(warmup_iters=1000, warmup_ratio=0.001, step=[27, 33])
total_epochs = 36
fp16 = dict(dtype="float16", loss_scale="dynamic")
