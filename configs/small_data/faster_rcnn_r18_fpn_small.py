# Faster R-CNN for a small COCO-format dataset: mask_rcnn_r18_fpn_small.py without the mask
# branch (same backbone, FPN, box head, images, optimizer and schedule). Set the paths and
# num_classes, or let the benchmark set them:
#   python tools/benchmark_accuracy.py configs/small_data/faster_rcnn_r18_fpn_small.py \
#       --data data/small/annotations/train.json data/small/annotations/val.json \
#       data/small/images --iters 2000
# (torchvision's side is then its FasterRCNN of the same sizes).
_base_ = "./mask_rcnn_r18_fpn_small.py"
# roi_head is replaced as a whole (_delete_=True drops the inherited mask_roi_extractor and
# mask_head); the box branch is the one of the Mask R-CNN config.
model = dict(
    type="FasterRCNN",
    roi_head=dict(
        _delete_=True,
        type="StandardRoIHead",
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0, aligned=True),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=64,
            fc_out_channels=256,
            roi_feat_size=7,
            num_classes=1,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder",
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
            ),
            reg_class_agnostic=False,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        ),
    ),
)
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(320, 320), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
]
data = dict(train=dict(pipeline=train_pipeline))
evaluation = dict(interval=12, metric=["bbox"])
work_dir = "./work_dirs/faster_rcnn_r18_fpn_small"
