# ATSS, ResNet-101 (torchvision ImageNet weights), 1x schedule.
_base_ = "./atss_r50_fpn_1x_coco.py"
model = dict(pretrained="torchvision://resnet101", backbone=dict(depth=101))
