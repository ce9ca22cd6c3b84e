"""Dense (per-location) heads, registered in ``HEADS``: :class:`AnchorHead`, the base of
anchor-based heads, :class:`RPNHead`, its proposal-mode subclass, :class:`RetinaHead` and on
it :class:`ATSSHead` and :class:`GFLHead`, and the anchor-free :class:`FCOSHead`, all
:class:`BaseDenseHead` subclasses; the shared steps of their detections
(:func:`flatten_levels`, :func:`top_pairs`, :func:`detections_per_image`). :class:`DETRHead`,
the per-query head of the DETR family, is not a dense head."""

from mmdet_like.models.dense_heads.anchor_head import (
    AnchorHead,
    AnchorTargets,
    anchor_inside_flags,
)
from mmdet_like.models.dense_heads.atss_head import ATSSHead
from mmdet_like.models.dense_heads.base_dense_head import (
    BaseDenseHead,
    detections_per_image,
    flatten_levels,
    top_pairs,
)
from mmdet_like.models.dense_heads.deformable_detr_head import DeformableDETRHead
from mmdet_like.models.dense_heads.detr_head import DETRHead, QueryTargets
from mmdet_like.models.dense_heads.dino_head import DINOHead
from mmdet_like.models.dense_heads.fcos_head import FCOSHead
from mmdet_like.models.dense_heads.gfl_head import GFLHead, Integral
from mmdet_like.models.dense_heads.retina_head import RetinaHead
from mmdet_like.models.dense_heads.rpn_head import RPNHead
from mmdet_like.models.dense_heads.rtdetr_head import RTDETRHead

__all__ = [
    "ATSSHead",
    "AnchorHead",
    "AnchorTargets",
    "BaseDenseHead",
    "DETRHead",
    "DINOHead",
    "DeformableDETRHead",
    "FCOSHead",
    "GFLHead",
    "Integral",
    "QueryTargets",
    "RPNHead",
    "RTDETRHead",
    "RetinaHead",
    "anchor_inside_flags",
    "detections_per_image",
    "flatten_levels",
    "top_pairs",
]
