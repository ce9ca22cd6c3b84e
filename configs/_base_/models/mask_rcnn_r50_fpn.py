# Mask R-CNN with a ResNet-50-FPN backbone: Faster R-CNN plus a 14x14 -> 28x28 FCN mask head.
_base_ = "./faster_rcnn_r50_fpn.py"
model = dict(
    type="MaskRCNN",
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
# Mask targets: aligned RoIAlign of the gt masks thresholded at 0.5 (mmdetection's and
# detectron2's); the small-data configs keep them soft (mask_target_binarize=False), which
# measured better on the demo set (docs/training.md).
train_cfg = dict(rcnn=dict(mask_size=28))
test_cfg = dict(rcnn=dict(mask_thr_binary=0.5))
