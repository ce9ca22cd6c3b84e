# Cascade R-CNN, ResNeXt-101 32x4d. torchvision has no 32x4d weights: put an ImageNet
# checkpoint with torchvision key names at checkpoints/resnext101_32x4d.pth.
# 1x schedule.
_base_ = "./cascade_rcnn_r50_fpn_1x.py"
model = dict(
    pretrained="checkpoints/resnext101_32x4d.pth",
    backbone=dict(type="ResNeXt", depth=101, groups=32, base_width=4),
)
