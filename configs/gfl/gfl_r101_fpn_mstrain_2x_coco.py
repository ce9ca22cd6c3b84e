# GFL, ResNet-101 (torchvision ImageNet weights), multi-scale training, 2x schedule.
_base_ = "./gfl_r50_fpn_mstrain_2x_coco.py"
model = dict(pretrained="torchvision://resnet101", backbone=dict(depth=101))
