# Faster R-CNN R-50-C4 (caffe style): ResNet-50 res2-res4 as the backbone (no neck), an RPN
# on the single res4 level (stride 16), RoIAlign 14x14 on res4, and res5 as the RoI head's
# shared head (ResLayer, 14x14 -> 7x7, 2048 channels), then an average-pooled classifier and
# box regressor (BBoxHead). The shared head's res5 loads the same pretrained file's layer4.
model = dict(
    type="FasterRCNN",
    pretrained="checkpoints/resnet50_caffe.pth",
    backbone=dict(
        type="ResNet",
        depth=50,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
        frozen_stages=1,
        norm_cfg=dict(type="BN", requires_grad=False),
        norm_eval=True,
        style="caffe",
    ),
    neck=None,
    rpn_head=dict(
        type="RPNHead",
        in_channels=1024,
        feat_channels=1024,
        # one level: anchors of 32..512 px (stride 16 x scales) at three aspect ratios
        anchor_generator=dict(
            type="AnchorGenerator", scales=[2, 4, 8, 16, 32], ratios=[0.5, 1.0, 2.0], strides=[16]
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0, 1.0, 1.0, 1.0]
        ),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0),
    ),
    roi_head=dict(
        type="StandardRoIHead",
        shared_head=dict(
            type="ResLayer",
            depth=50,
            stage=3,
            stride=2,
            dilation=1,
            style="caffe",
            norm_cfg=dict(type="BN", requires_grad=False),
            norm_eval=True,
        ),
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0, aligned=True),
            out_channels=1024,
            featmap_strides=[16],
        ),
        bbox_head=dict(
            type="BBoxHead",
            with_avg_pool=True,
            roi_feat_size=7,
            in_channels=2048,
            num_classes=80,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder",
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
            ),
            reg_class_agnostic=False,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        ),
    ),
)
# mmdetection's published settings, as the FPN models' (allowed_border=0 and min_pos_iou=0.3
# hurt small data: see docs/training.md). Proposals (Detectron's and maskrcnn-benchmark's C4
# numbers): 12000 top-scoring anchors before NMS, 2000 after, in training; 6000 / 1000 at
# test time. With one level the per-level caps (nms_pre, nms_post) and the per-image one
# (max_num) coincide.
train_cfg = dict(
    rpn=dict(
        assigner=dict(
            type="MaxIoUAssigner",
            pos_iou_thr=0.7,
            neg_iou_thr=0.3,
            min_pos_iou=0.3,
            ignore_iof_thr=-1,
        ),
        sampler=dict(
            type="RandomSampler",
            num=256,
            pos_fraction=0.5,
            neg_pos_ub=-1,
            add_gt_as_proposals=False,
        ),
        allowed_border=0,
        pos_weight=-1,
    ),
    rpn_proposal=dict(nms_pre=12000, nms_post=2000, max_num=2000, nms_thr=0.7, min_bbox_size=0),
    rcnn=dict(
        assigner=dict(
            type="MaxIoUAssigner",
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.5,
            ignore_iof_thr=-1,
        ),
        sampler=dict(
            type="RandomSampler",
            num=512,
            pos_fraction=0.25,
            neg_pos_ub=-1,
            add_gt_as_proposals=True,
        ),
        pos_weight=-1,
    ),
)
test_cfg = dict(
    rpn=dict(nms_pre=6000, nms_post=1000, max_num=1000, nms_thr=0.7, min_bbox_size=0),
    rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_thr=0.5), max_per_img=100),
)
