# Fast R-CNN, ResNeXt-101 32x8d (torchvision ImageNet weights).
# 2x schedule.
_base_ = "./fast_rcnn_r50_fpn_2x.py"
model = dict(
    pretrained="torchvision://resnext101_32x8d",
    backbone=dict(type="ResNeXt", depth=101, groups=32, base_width=8),
)
