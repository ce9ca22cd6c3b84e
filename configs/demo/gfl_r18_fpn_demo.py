# Small GFL (half-width ResNet-18, 64-channel FPN on P3-P5, 64-channel GroupNorm head) for the
# demo shapes dataset; the data, sizes, schedule and optimizer of
# configs/demo/retinanet_r18_fpn_demo.py:
#   python tools/make_demo_dataset.py data/demo
#   python tools/train.py configs/demo/gfl_r18_fpn_demo.py
#   python tools/test.py configs/demo/gfl_r18_fpn_demo.py \
#       work_dirs/gfl_r18_fpn_demo/latest.pth --eval bbox
_base_ = "./retinanet_r18_fpn_demo.py"
model = dict(
    type="GFL",
    neck=dict(add_extra_convs="on_output"),
    bbox_head=dict(
        _delete_=True,
        type="GFLHead",
        num_classes=4,
        in_channels=64,
        stacked_convs=4,
        feat_channels=64,
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        # ATSS's anchors of configs/demo/atss_r18_fpn_demo.py (8 strides wide, for the
        # assignment; their centres are the boxes' points): bbox AP 0.706 against 0.484 with
        # 2-stride anchors (README, "The ATSS and GFL demos"); distances up to reg_max = 16
        # strides: 128 px on P3
        anchor_generator=dict(
            type="AnchorGenerator",
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32],
        ),
        loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_dfl=dict(type="DistributionFocalLoss", loss_weight=0.25),
        reg_max=16,
        loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    ),
)
train_cfg = dict(
    _delete_=True, assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1
)
test_cfg = dict(nms=dict(iou_thr=0.6))
work_dir = "./work_dirs/gfl_r18_fpn_demo"
