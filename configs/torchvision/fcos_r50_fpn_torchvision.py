# FCOS R50-FPN with torchvision's settings, for weights converted from torchvision's
# fcos_resnet50_fpn by tools/convert_torchvision_detection.py. Differences from
# configs/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x.py, all
# torchvision's (tests/models/test_torchvision_single_stage.py names each):
#   a pytorch-style ResNet-50 with frozen batch norms; images normalised (ImageNet mean/std
#   on 0..1 RGB), then resized in float by torch;
#   points at the cell corners, i * stride (point_offset=0; mmdetection: cell centres);
#   no learnable scale per level on the distances (scale_regression=False);
#   regress ranges compared strictly (low < d < high);
#   the box loss averaged over the positives, not weighted by the centre-ness targets;
#   detections scored sqrt(class score * centre-ness), thresholded at 0.2 on that score,
#   NMS at 0.6 (mmdetection: thresholded on the class score at 0.05, scored by the product,
#   NMS at 0.5); GIoU with eps 1e-7.
# torchvision's classifier has a channel for its background class 0, never a target; the
# converter drops it.
_base_ = "../fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x.py"
model = dict(
    pretrained=None,
    backbone=dict(norm_cfg=dict(type="FrozenBN"), frozen_stages=1, norm_eval=True, style="pytorch"),
    bbox_head=dict(
        regress_ranges=((0, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)),
        strict_regress_ranges=True,
        point_offset=0.0,
        scale_regression=False,
        centerness_weighted_bbox_loss=False,
        sqrt_score=True,
        loss_bbox=dict(eps=1e-7),
    ),
)
test_cfg = dict(
    nms_pre=1000, min_bbox_size=0, score_thr=0.2, nms=dict(type="nms", iou_thr=0.6),
    max_per_img=100,
)  # fmt: skip
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(1333, 800),
        flip=False,
        transforms=[
            dict(type="Normalize", **img_norm_cfg, value_scale=255),
            dict(type="Resize", keep_ratio=True, backend="torch"),
            dict(type="RandomFlip"),
            dict(type="Pad", size_divisor=32),
            dict(type="PackDetInputs"),
        ],
    ),
]
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
data = dict(
    train=dict(pipeline=train_pipeline),
    val=dict(pipeline=test_pipeline),
    test=dict(pipeline=test_pipeline),
)
