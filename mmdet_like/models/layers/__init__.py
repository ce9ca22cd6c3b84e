"""Layers chosen by config (normalisation), and convolution + normalisation folding."""

from mmdet_like.models.layers.conv_norm import conv_norm, fixed_affine
from mmdet_like.models.layers.norm import FrozenBatchNorm2d, GroupNorm, build_norm_layer

__all__ = ["FrozenBatchNorm2d", "GroupNorm", "build_norm_layer", "conv_norm", "fixed_affine"]
