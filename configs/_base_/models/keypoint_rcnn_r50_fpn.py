# Keypoint R-CNN with a ResNet-50-FPN backbone: Faster R-CNN (one class, person) plus a
# keypoint branch: RoIAlign 14x14 (sampling ratio 2) on P2-P5, 8 3x3 convs of 512, a 4x4
# stride-2 transposed conv to the 17 COCO keypoints and a 2x bilinear upsampling (56x56
# heatmaps), softmax cross-entropy over the cells normalised by the visible keypoints.
_base_ = "./faster_rcnn_r50_fpn.py"
model = dict(
    type="KeypointRCNN",
    roi_head=dict(
        bbox_head=dict(num_classes=1),
        keypoint_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=2, aligned=True),
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
            loss_weight=1.0,
            loss_normalizer="visible",
        ),
    ),
)
