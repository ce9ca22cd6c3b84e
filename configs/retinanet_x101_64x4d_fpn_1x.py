# RetinaNet, ResNeXt-101 64x4d. torchvision has no 64x4d weights: put an ImageNet
# checkpoint with torchvision key names at checkpoints/resnext101_64x4d.pth.
# 1x schedule.
_base_ = "./retinanet_r50_fpn_1x.py"
model = dict(
    pretrained="checkpoints/resnext101_64x4d.pth",
    backbone=dict(type="ResNeXt", depth=101, groups=64, base_width=4),
)
