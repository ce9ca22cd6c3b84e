# Small FCOS (half-width ResNet-18, 64-channel FPN on P3-P5, 64-channel GroupNorm head, the
# centre-sampling / norm-on-bbox / centre-ness-on-regression / GIoU variant) for the demo
# shapes dataset; the data, schedule and optimizer of configs/demo/retinanet_r18_fpn_demo.py:
#   python tools/make_demo_dataset.py data/demo
#   python tools/train.py configs/demo/fcos_r18_fpn_demo.py
#   python tools/test.py configs/demo/fcos_r18_fpn_demo.py \
#       work_dirs/fcos_r18_fpn_demo/latest.pth --eval bbox
_base_ = "./retinanet_r18_fpn_demo.py"
model = dict(
    _delete_=True,
    type="FCOS",
    pretrained=None,
    backbone=dict(
        type="ResNet",
        depth=18,
        base_channels=32,  # stages of 32, 64, 128 and 256 channels
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
        style="pytorch",
    ),
    neck=dict(
        type="FPN",
        in_channels=[32, 64, 128, 256],
        out_channels=64,
        start_level=1,
        add_extra_convs="on_output",
        num_outs=3,
        relu_before_extra_convs=True,
    ),
    bbox_head=dict(
        type="FCOSHead",
        num_classes=4,
        in_channels=64,
        stacked_convs=4,
        feat_channels=64,
        strides=[8, 16, 32],
        # the objects are 15-60 px: about 3 strides of distance per level
        regress_ranges=((-1, 24), (24, 48), (48, 1e8)),
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        conv_bias=True,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
        loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    ),
)
train_cfg = dict(_delete_=True)
test_cfg = dict(
    _delete_=True, nms_pre=1000, min_bbox_size=0, score_thr=0.05,
    nms=dict(type="nms", iou_thr=0.5), max_per_img=50,
)  # fmt: skip
work_dir = "./work_dirs/fcos_r18_fpn_demo"
