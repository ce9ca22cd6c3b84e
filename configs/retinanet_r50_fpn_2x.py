# RetinaNet, ResNet-50-FPN, 2x schedule (24 epochs), COCO.
_base_ = [
    "_base_/models/retinanet_r50_fpn.py",
    "_base_/datasets/coco_detection.py",
    "_base_/schedules/schedule_2x.py",
    "_base_/default_runtime.py",
]
optimizer = dict(lr=0.01)
