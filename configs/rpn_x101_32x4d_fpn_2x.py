# RPN, ResNeXt-101 32x4d. torchvision has no 32x4d weights: put an ImageNet
# checkpoint with torchvision key names at checkpoints/resnext101_32x4d.pth.
# 2x schedule.
_base_ = "./rpn_r50_fpn_2x.py"
model = dict(
    pretrained="checkpoints/resnext101_32x4d.pth",
    backbone=dict(type="ResNeXt", depth=101, groups=32, base_width=4),
)
