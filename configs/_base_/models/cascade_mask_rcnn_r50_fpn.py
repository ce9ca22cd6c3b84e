# Cascade Mask R-CNN with a ResNet-50-FPN backbone: Cascade R-CNN plus Mask R-CNN's 14x14 ->
# 28x28 FCN mask head on the last stage (its positives in training, the final detections at
# test time). num_classes: model = dict(roi_head=dict(bbox_head=dict(num_classes=N),
# mask_head=dict(num_classes=N))).
_base_ = "./cascade_rcnn_r50_fpn.py"
model = dict(
    roi_head=dict(
        mask_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0, aligned=True),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
    ),
)
test_cfg = dict(rcnn=dict(mask_thr_binary=0.5))
