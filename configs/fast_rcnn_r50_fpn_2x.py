# Fast R-CNN, ResNet-50-FPN, 2x schedule (24 epochs), COCO.
_base_ = [
    "_base_/models/fast_rcnn_r50_fpn.py",
    "_base_/datasets/coco_detection_proposals.py",
    "_base_/schedules/schedule_2x.py",
    "_base_/default_runtime.py",
]
