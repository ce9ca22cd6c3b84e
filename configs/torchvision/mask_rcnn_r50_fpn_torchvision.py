# Mask R-CNN R50-FPN with torchvision's inference settings, for weights converted from
# torchvision's maskrcnn_resnet50_fpn by tools/convert_torchvision_detection.py. The box part
# is faster_rcnn_r50_fpn_torchvision.py; masks: 14x14 unaligned RoIAlign with 2x2 samples,
# and torchvision's paste (mask padded by one pixel, box enlarged alike, bilinear resize).
_base_ = "./faster_rcnn_r50_fpn_torchvision.py"
model = dict(
    type="MaskRCNN",
    roi_head=dict(
        mask_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=2, aligned=False),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
            paste_mode="torchvision",
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
    ),
)
# torchvision's mask targets: unaligned RoIAlign of the gt masks, soft (not thresholded)
train_cfg = dict(rcnn=dict(mask_size=28, mask_target_aligned=False, mask_target_binarize=False))
test_cfg = dict(rcnn=dict(mask_thr_binary=0.5))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
data = dict(train=dict(pipeline=train_pipeline))
evaluation = dict(interval=1, metric=["bbox", "segm"])
