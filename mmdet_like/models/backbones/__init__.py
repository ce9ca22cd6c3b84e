"""Backbones (registered in ``BACKBONES``)."""

from mmdet_like.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet_like.models.backbones.resnext import ResNeXt

__all__ = ["BasicBlock", "Bottleneck", "ResNeXt", "ResNet"]
