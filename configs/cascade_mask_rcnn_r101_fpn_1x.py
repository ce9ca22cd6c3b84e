# Cascade Mask R-CNN, ResNet-101 (torchvision ImageNet weights).
# 1x schedule.
_base_ = "./cascade_mask_rcnn_r50_fpn_1x.py"
model = dict(pretrained="torchvision://resnet101", backbone=dict(depth=101))
