"""Models: importing this package registers every built-in model part."""

from mmdet_like.models import backbones, dense_heads, layers, losses, necks, task_modules, utils
from mmdet_like.models.builder import (
    build_anchor_generator,
    build_assigner,
    build_backbone,
    build_bbox_coder,
    build_detector,
    build_head,
    build_iou_calculator,
    build_loss,
    build_neck,
    build_roi_extractor,
    build_sampler,
    build_shared_head,
)

__all__ = [
    "backbones",
    "build_anchor_generator",
    "build_assigner",
    "build_backbone",
    "build_bbox_coder",
    "build_detector",
    "build_head",
    "build_iou_calculator",
    "build_loss",
    "build_neck",
    "build_roi_extractor",
    "build_sampler",
    "build_shared_head",
    "dense_heads",
    "layers",
    "losses",
    "necks",
    "task_modules",
    "utils",
]
