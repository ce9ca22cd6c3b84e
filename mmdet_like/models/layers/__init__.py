"""Layers chosen by config (normalisation)."""

from mmdet_like.models.layers.norm import FrozenBatchNorm2d, GroupNorm, build_norm_layer

__all__ = ["FrozenBatchNorm2d", "GroupNorm", "build_norm_layer"]
