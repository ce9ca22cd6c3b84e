# Cascade R-CNN, ResNet-101 (torchvision ImageNet weights).
# 1x schedule.
_base_ = "./cascade_rcnn_r50_fpn_1x.py"
model = dict(pretrained="torchvision://resnet101", backbone=dict(depth=101))
