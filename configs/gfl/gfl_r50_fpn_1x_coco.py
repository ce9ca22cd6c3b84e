# GFL, ResNet-50-FPN, 1x schedule (12 epochs), COCO, as mmdetection's gfl_r50_fpn_1x_coco:
# SGD at LR 0.01 for 16 images a batch (8 processes x 2), no gradient clipping.
_base_ = [
    "../_base_/models/gfl_r50_fpn.py",
    "../_base_/datasets/coco_detection.py",
    "../_base_/schedules/schedule_1x.py",
    "../_base_/default_runtime.py",
]
optimizer = dict(lr=0.01)
optimizer_config = dict(_delete_=True)
