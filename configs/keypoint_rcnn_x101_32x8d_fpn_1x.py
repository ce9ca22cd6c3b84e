# Keypoint R-CNN, ResNeXt-101 32x8d (torchvision ImageNet weights), 1x schedule.
_base_ = "./keypoint_rcnn_r50_fpn_1x.py"
model = dict(
    pretrained="torchvision://resnext101_32x8d",
    backbone=dict(type="ResNeXt", depth=101, groups=32, base_width=8),
)
