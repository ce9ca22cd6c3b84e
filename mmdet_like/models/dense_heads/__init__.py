"""Dense (per-location) heads, registered in ``HEADS``."""

from mmdet_like.models.dense_heads.rpn_head import RPNHead, anchor_inside_flags, flatten_levels

__all__ = ["RPNHead", "anchor_inside_flags", "flatten_levels"]
