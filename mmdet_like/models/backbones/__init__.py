"""Backbones (registered in ``BACKBONES``); every one is a :class:`BaseBackbone`."""

from mmdet_like.models.backbones.base_backbone import BaseBackbone, Block, FeatureShape
from mmdet_like.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet_like.models.backbones.resnext import ResNeXt
from mmdet_like.models.backbones.timm_backbone import TimmBackbone

__all__ = [
    "BaseBackbone",
    "BasicBlock",
    "Block",
    "Bottleneck",
    "FeatureShape",
    "ResNeXt",
    "ResNet",
    "TimmBackbone",
]
