# Mask R-CNN R-50-C4 (caffe style): Faster R-CNN R-50-C4 plus a mask head on the positives'
# res5 features (the box branch's RoIAlign 14x14 on res4 and shared head, reused:
# share_roi_extractor=True), no convs, a 2x deconv: 7x7 -> 14x14 masks. At test time the
# extractor and res5 run again on the detections.
_base_ = "./faster_rcnn_r50_caffe_c4.py"
model = dict(
    type="MaskRCNN",
    roi_head=dict(
        mask_roi_extractor=None,
        share_roi_extractor=True,
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=0,
            in_channels=2048,
            conv_out_channels=256,
            roi_feat_size=7,
            upsample_ratio=2,
            num_classes=80,
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
    ),
)
train_cfg = dict(rcnn=dict(mask_size=14))
test_cfg = dict(rcnn=dict(mask_thr_binary=0.5))
