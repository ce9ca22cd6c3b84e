# Faster R-CNN for a small COCO-format dataset: mask_rcnn_r18_fpn_small.py without the mask
# branch (same backbone, FPN, box head, images, optimizer and schedule). Set the paths and
# num_classes, or let the benchmark set them:
#   python tools/benchmark_accuracy.py configs/small_data/faster_rcnn_r18_fpn_small.py \
#       --data data/small/annotations/train.json data/small/annotations/val.json \
#       data/small/images --iters 2000
# (torchvision's side is then its FasterRCNN of the same sizes).
_base_ = "./mask_rcnn_r18_fpn_small.py"
# the box branch is the Mask R-CNN config's; the mask branch is dropped
model = dict(type="FasterRCNN", roi_head=dict(mask_roi_extractor=None, mask_head=None))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(320, 320), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
data = dict(train=dict(pipeline=train_pipeline))
evaluation = dict(interval=12, metric=["bbox"])
work_dir = "./work_dirs/faster_rcnn_r18_fpn_small"
