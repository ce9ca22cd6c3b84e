# Faster R-CNN R50-FPN with torchvision's inference settings, for weights converted from
# torchvision's fasterrcnn_resnet50_fpn by tools/convert_torchvision_detection.py.
# Differences from configs/faster_rcnn_r50_fpn_1x.py, all torchvision's:
#   frozen batch norms; images normalised (ImageNet mean/std on 0..1 RGB) and then resized
#   in float by torch (bilinear, sizes floored: short side 800, long side at most 1333);
#   anchors of side 32..512 (one per level, ratios 0.5/1/2) with rounded corners;
#   box decoding clamps log size ratios only from above (boxes may shrink freely);
#   RPN: 1000 best per level before NMS 0.7, 1000 per image after, boxes under 1e-3 dropped;
#   RoIAlign unaligned with 2x2 samples; box head drops boxes under 1e-2 before NMS.
# torchvision's 91 COCO ids: 80 classes with the converter's default (unused ids dropped),
# so labels follow CocoDataset; `--keep-unused` keeps all 90 (set num_classes=90 then).
# Training, torchvision's settings where they differ from mmdetection's (train_cfg below; the
# step-for-step test tests/models/test_torchvision_training_equivalence.py names each):
#   RPN: every anchor takes part (allowed_border=-1), a gt claims its best anchors however
#   low their IoU (min_pos_iou=0); proposals in training: 2000 per level before NMS, 2000
#   per image after, boxes under 1e-3 dropped;
#   RoI head: no low-quality matches (IoU >= 0.5 positive, < 0.5 negative), box loss smooth
#   L1 with beta 1/9 (mmdetection: beta 1); mask targets from an unaligned RoIAlign of the gt
#   masks, not thresholded (soft targets; mmdetection: aligned, thresholded at 0.5).
#   Loss normalisation is the same on both sides: RPN and RoI losses averaged over the
#   sampled anchors / RoIs of the batch, the mask loss over the positives' pixels.
# torchvision computes the P6 anchor stride as padded size // P6 size: the same as ours
# (64) when the padded image sides are multiples of 64.
_base_ = [
    "../_base_/models/faster_rcnn_r50_fpn.py",
    "../_base_/datasets/coco_detection.py",
    "../_base_/schedules/schedule_1x.py",
    "../_base_/default_runtime.py",
]
model = dict(
    pretrained=None,
    backbone=dict(norm_cfg=dict(type="FrozenBN"), frozen_stages=1, norm_eval=True),
    rpn_head=dict(
        anchor_generator=dict(
            type="AnchorGenerator",
            strides=[4, 8, 16, 32, 64],
            base_sizes=[32, 64, 128, 256, 512],
            scales=[1.0],
            ratios=[0.5, 1.0, 2.0],
            round_base_anchors=True,
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder",
            target_means=[0.0] * 4,
            target_stds=[1.0, 1.0, 1.0, 1.0],
            symmetric_clip=False,
        ),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=2, aligned=False),
        ),
        bbox_head=dict(
            num_classes=80,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder",
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
                symmetric_clip=False,
            ),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0),
        ),
    ),
)
train_cfg = dict(
    rpn=dict(assigner=dict(min_pos_iou=0.0), allowed_border=-1),
    rpn_proposal=dict(nms_pre=2000, nms_post=None, max_num=2000, nms_thr=0.7, min_bbox_size=1e-3),
    rcnn=dict(assigner=dict(match_low_quality=False)),
)
test_cfg = dict(
    rpn=dict(nms_pre=1000, nms_post=None, max_num=1000, nms_thr=0.7, min_bbox_size=1e-3),
    rcnn=dict(
        score_thr=0.05, nms=dict(type="nms", iou_thr=0.5), max_per_img=100, min_bbox_size=1e-2
    ),
)
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
data = dict(val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
