# Cascade R-CNN with a ResNet-50-FPN backbone: Faster R-CNN's backbone, neck and RPN, and three
# box stages trained at IoU 0.5 / 0.6 / 0.7 (CascadeRoIHead). One bbox_head serves every stage,
# so a user's config changes num_classes in one place:
#     model = dict(roi_head=dict(bbox_head=dict(num_classes=20)))
# stage_bbox_heads holds only what differs by stage (the box coder's target stds).
_base_ = "./faster_rcnn_r50_fpn.py"
model = dict(
    type="CascadeRCNN",
    roi_head=dict(
        _delete_=True,
        type="CascadeRoIHead",
        num_stages=3,
        stage_loss_weights=[1.0, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0, aligned=True),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4),
            reg_class_agnostic=True,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        ),
        stage_bbox_heads=[
            dict(bbox_coder=dict(target_stds=[0.1, 0.1, 0.2, 0.2])),
            dict(bbox_coder=dict(target_stds=[0.05, 0.05, 0.1, 0.1])),
            dict(bbox_coder=dict(target_stds=[0.033, 0.033, 0.067, 0.067])),
        ],
    ),
)


def _stage(iou):
    return dict(
        assigner=dict(
            type="MaxIoUAssigner",
            pos_iou_thr=iou,
            neg_iou_thr=iou,
            min_pos_iou=iou,
            ignore_iof_thr=-1,
        ),
        sampler=dict(
            type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1,
            add_gt_as_proposals=True,
        ),
        pos_weight=-1,
    )  # fmt: skip


train_cfg = dict(rcnn=[_stage(0.5), _stage(0.6), _stage(0.7)])  # the last mask_size: 28 (default)
del _stage
