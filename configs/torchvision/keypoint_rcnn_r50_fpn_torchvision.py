# Keypoint R-CNN R50-FPN with torchvision's settings, for weights converted from
# torchvision's keypointrcnn_resnet50_fpn by tools/convert_torchvision_detection.py (one class,
# person). The box part is faster_rcnn_r50_fpn_torchvision.py (its comment lists the
# differences from mmdetection); keypoints: 14x14 unaligned RoIAlign with 2x2 samples (torchvision's
# MultiScaleRoIAlign), the loss over the visible keypoints of the batch, the heatmaps
# decoded by bicubic resizing to each box (the same in both).
_base_ = "./faster_rcnn_r50_fpn_torchvision.py"
model = dict(
    type="KeypointRCNN",
    roi_head=dict(
        bbox_head=dict(num_classes=1),
        keypoint_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=2, aligned=False),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        keypoint_head=dict(
            type="KeypointRCNNHead",
            num_keypoints=17,
            in_channels=256,
            num_convs=8,
            conv_out_channels=512,
            roi_feat_size=14,
            upsample_scale=2,
            loss_normalizer="visible",
        ),
    ),
)
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
    dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
data_root = "data/coco/"
data = dict(
    train=dict(
        classes=["person"],
        ann_file=data_root + "annotations/person_keypoints_train2017.json",
        pipeline=train_pipeline,
    ),
    val=dict(classes=["person"], ann_file=data_root + "annotations/person_keypoints_val2017.json"),
    test=dict(classes=["person"], ann_file=data_root + "annotations/person_keypoints_val2017.json"),
)
evaluation = dict(interval=1, metric=["bbox", "keypoints"])
