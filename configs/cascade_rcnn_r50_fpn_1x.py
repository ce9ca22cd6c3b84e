# Cascade R-CNN, ResNet-50-FPN, 1x schedule (12 epochs), COCO.
_base_ = [
    "_base_/models/cascade_rcnn_r50_fpn.py",
    "_base_/datasets/coco_detection.py",
    "_base_/schedules/schedule_1x.py",
    "_base_/default_runtime.py",
]
