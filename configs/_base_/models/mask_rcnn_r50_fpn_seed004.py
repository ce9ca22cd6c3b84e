# The common settings of the seed-004 runs (../shared/seeds/004: a detectron2 user's Mask R-CNN
# experiments on COCO 2017): ResNet-50 with frozen batch norms, an FPN of four levels (P2-P5,
# one anchor size a level, given per run) with a normalisation, batch-normed heads.
# The log's FPN norm is "EnvNormS0", a norm of that user's code that is not public; GroupNorm
# (32 groups) stands in for it. Each run's config (configs/seed004/) sets its RoI head, anchor
# sizes and backbone plugins.
_base_ = "./mask_rcnn_r50_fpn.py"
model = dict(
    backbone=dict(norm_cfg=dict(type="FrozenBN"), norm_eval=True),
    neck=dict(num_outs=4, norm_cfg=dict(type="GN", num_groups=32)),
    rpn_head=dict(
        anchor_generator=dict(
            _delete_=True,
            type="AnchorGenerator",
            sizes=[[64], [128], [256], [512]],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32],
        ),
    ),
    roi_head=dict(
        bbox_head=dict(
            _delete_=True,
            type="Shared4Conv1FCBBoxHead",
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            norm_cfg=dict(type="BN", requires_grad=True),
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder",
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
            ),
            reg_class_agnostic=False,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        ),
        mask_head=dict(norm_cfg=dict(type="BN", requires_grad=True)),
    ),
)
