# RPN, ResNet-101 (torchvision ImageNet weights).
# 2x schedule.
_base_ = "./rpn_r50_fpn_2x.py"
model = dict(pretrained="torchvision://resnet101", backbone=dict(depth=101))
