"""Layers chosen by config (normalisation), convolution + normalisation folding, and the
learnable per-level ``Scale``."""

from mmdet_like.models.layers.conv_norm import conv_norm, fixed_affine
from mmdet_like.models.layers.norm import FrozenBatchNorm2d, GroupNorm, build_norm_layer
from mmdet_like.models.layers.scale import Scale

__all__ = [
    "FrozenBatchNorm2d",
    "GroupNorm",
    "Scale",
    "build_norm_layer",
    "conv_norm",
    "fixed_affine",
]
