# The seed-004 runs with a Res5 RoI head ("ROIHeads: Res5ROIHeads"): the Res5-on-FPN Mask R-CNN
# (mask_rcnn_r50_fpn_res5roi.py) with the runs' common backbone, neck and RPN settings, the
# same as mask_rcnn_r50_fpn_seed004.py's (frozen batch norms, four GroupNorm FPN levels, one
# anchor size a level).
_base_ = "./mask_rcnn_r50_fpn_res5roi.py"
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
    # res5 normalised like the backbone it continues
    roi_head=dict(shared_head=dict(norm_cfg=dict(type="FrozenBN"))),
)
