"""Dense (per-location) heads, registered in ``HEADS``: :class:`AnchorHead`, the base of
anchor-based heads, and :class:`RPNHead`, its proposal-mode subclass."""

from mmdet_like.models.dense_heads.anchor_head import (
    AnchorHead,
    AnchorTargets,
    anchor_inside_flags,
    flatten_levels,
)
from mmdet_like.models.dense_heads.rpn_head import RPNHead

__all__ = ["AnchorHead", "AnchorTargets", "RPNHead", "anchor_inside_flags", "flatten_levels"]
