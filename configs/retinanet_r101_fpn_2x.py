# RetinaNet, ResNet-101 (torchvision ImageNet weights).
# 2x schedule.
_base_ = "./retinanet_r50_fpn_2x.py"
model = dict(pretrained="torchvision://resnet101", backbone=dict(depth=101))
