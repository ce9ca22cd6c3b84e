# Small ATSS (half-width ResNet-18, 64-channel FPN on P3-P5, 64-channel GroupNorm head) for the
# demo shapes dataset; the data, sizes, schedule and optimizer of
# configs/demo/retinanet_r18_fpn_demo.py:
#   python tools/make_demo_dataset.py data/demo
#   python tools/train.py configs/demo/atss_r18_fpn_demo.py
#   python tools/test.py configs/demo/atss_r18_fpn_demo.py \
#       work_dirs/atss_r18_fpn_demo/latest.pth --eval bbox
_base_ = "./retinanet_r18_fpn_demo.py"
model = dict(
    type="ATSS",
    neck=dict(add_extra_convs="on_output"),
    bbox_head=dict(
        _delete_=True,
        type="ATSSHead",
        num_classes=4,
        in_channels=64,
        stacked_convs=4,
        feat_channels=64,
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        # one anchor per location, 8 strides wide as in mmdetection's COCO configs: 64 px
        # on P3 to 256 px on P5. ATSS ranks anchors by IoU only to pick positives, and these
        # give 8.0 positives per object here against 3.8 with 2-stride anchors (16-64 px, the
        # objects' own sizes); bbox AP 0.741 against 0.463 (README, "The ATSS and GFL demos")
        anchor_generator=dict(
            type="AnchorGenerator",
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32],
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
        ),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
        loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    ),
)
train_cfg = dict(
    _delete_=True, assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1
)
test_cfg = dict(nms=dict(iou_thr=0.6))
work_dir = "./work_dirs/atss_r18_fpn_demo"
