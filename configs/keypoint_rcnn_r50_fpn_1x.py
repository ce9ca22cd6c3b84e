# Keypoint R-CNN, ResNet-50-FPN (pytorch style, torchvision ImageNet weights), 1x schedule
# (12 epochs), COCO person keypoints.
_base_ = [
    "_base_/models/keypoint_rcnn_r50_fpn.py",
    "_base_/datasets/coco_keypoints.py",
    "_base_/schedules/schedule_1x.py",
    "_base_/default_runtime.py",
]
