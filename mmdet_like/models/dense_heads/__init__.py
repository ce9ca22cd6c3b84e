"""Dense (per-location) heads, registered in ``HEADS``: :class:`AnchorHead`, the base of
anchor-based heads, :class:`RPNHead`, its proposal-mode subclass, :class:`RetinaHead`, and the
anchor-free :class:`FCOSHead`, all :class:`BaseDenseHead` subclasses."""

from mmdet_like.models.dense_heads.anchor_head import (
    AnchorHead,
    AnchorTargets,
    anchor_inside_flags,
    flatten_levels,
)
from mmdet_like.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet_like.models.dense_heads.fcos_head import FCOSHead
from mmdet_like.models.dense_heads.retina_head import RetinaHead
from mmdet_like.models.dense_heads.rpn_head import RPNHead

__all__ = [
    "AnchorHead",
    "AnchorTargets",
    "BaseDenseHead",
    "FCOSHead",
    "RPNHead",
    "RetinaHead",
    "anchor_inside_flags",
    "flatten_levels",
]
