# RetinaNet R50-FPN with torchvision's settings, for weights converted from torchvision's
# retinanet_resnet50_fpn by tools/convert_torchvision_detection.py. Differences from
# configs/retinanet_r50_fpn_1x.py, all torchvision's (the equivalence tests in
# tests/models/test_torchvision_single_stage.py name each):
#   frozen batch norms; images normalised (ImageNet mean/std on 0..1 RGB), then resized in
#   float by torch (bilinear, short side 800, long side at most 1333);
#   P6 from P5 (not C5) and a ReLU before P7 (torchvision's LastLevelP6P7(256, 256));
#   anchor sizes (x, int(x 2^(1/3)), int(x 2^(2/3))) for x = 32..512, truncated (so each
#   level has its own scales), ratios 0.5/1/2, rounded corners;
#   box decoding clamps log size ratios only from above;
#   a low-quality match (an anchor that is some gt's best) goes to the anchor's own best gt;
#   the losses of each image are divided by its own positives, then averaged over images
#   (mmdetection: the batch's sum over the batch's positives);
#   inference keeps 300 detections per image (mmdetection: 100).
# torchvision's classifier has a channel for its background class 0, never a target; the
# converter drops it (a by-design difference: its focal loss term is the only one the two
# models do not share, and the test switches it off on torchvision's side).
_base_ = "../retinanet_r50_fpn_1x.py"
model = dict(
    pretrained=None,
    backbone=dict(norm_cfg=dict(type="FrozenBN"), frozen_stages=1, norm_eval=True),
    neck=dict(add_extra_convs="on_output", relu_before_extra_convs=True),
    bbox_head=dict(
        anchor_generator=dict(
            _delete_=True,
            type="AnchorGenerator",
            strides=[8, 16, 32, 64, 128],
            base_sizes=[32, 64, 128, 256, 512],
            scales=[
                [1.0, 40 / 32, 50 / 32],
                [1.0, 80 / 64, 101 / 64],
                [1.0, 161 / 128, 203 / 128],
                [1.0, 322 / 256, 406 / 256],
                [1.0, 645 / 512, 812 / 512],
            ],
            ratios=[0.5, 1.0, 2.0],
            round_base_anchors=True,
        ),
        bbox_coder=dict(symmetric_clip=False),
    ),
)
train_cfg = dict(
    assigner=dict(min_pos_iou=0.0, low_quality_gt="best"),
    loss_avg="image",
)
test_cfg = dict(nms_pre=1000, score_thr=0.05, nms=dict(type="nms", iou_thr=0.5), max_per_img=300)
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
