# GFL (Generalized Focal Loss) with a ResNet-50-FPN backbone (P3-P7; P6 from P5, as
# mmdetection's gfl_r50_fpn_1x_coco): ATSS's anchors and assignment, a GroupNorm head with
# joint class-quality scores (quality focal loss) and distance distributions over 17 bins
# (reg_max 16; distribution focal loss), GIoU on decoded boxes.
model = dict(
    type="GFL",
    pretrained="torchvision://resnet50",
    backbone=dict(
        type="ResNet",
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=True,
        style="pytorch",
    ),
    neck=dict(
        type="FPN",
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs="on_output",
        num_outs=5,
    ),
    bbox_head=dict(
        type="GFLHead",
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        norm_cfg=dict(type="GN", num_groups=32, requires_grad=True),
        anchor_generator=dict(
            type="AnchorGenerator",
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128],
        ),
        loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_dfl=dict(type="DistributionFocalLoss", loss_weight=0.25),
        reg_max=16,
        loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    ),
)
# single-stage: the head's settings directly (no rpn / rcnn keys)
train_cfg = dict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1)
test_cfg = dict(
    nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_thr=0.6),
    max_per_img=100,
)  # fmt: skip
