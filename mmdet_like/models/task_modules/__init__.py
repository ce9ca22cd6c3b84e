"""Prior generators (anchors, points), box coders, assigners (with their match costs) and
samplers used by heads."""

from mmdet_like.models.task_modules.anchor_generator import AnchorGenerator
from mmdet_like.models.task_modules.assign_result import AssignResult
from mmdet_like.models.task_modules.atss_assigner import ATSSAssigner
from mmdet_like.models.task_modules.base_assigner import BaseAssigner
from mmdet_like.models.task_modules.delta_xywh_bbox_coder import DeltaXYWHBBoxCoder
from mmdet_like.models.task_modules.distance_point_bbox_coder import DistancePointBBoxCoder
from mmdet_like.models.task_modules.hungarian_assigner import HungarianAssigner
from mmdet_like.models.task_modules.iou2d_calculator import BboxOverlaps2D
from mmdet_like.models.task_modules.match_costs import (
    BaseMatchCost,
    BBoxL1Cost,
    ClassificationCost,
    FocalLossCost,
    IoUCost,
)
from mmdet_like.models.task_modules.max_iou_assigner import MaxIoUAssigner
from mmdet_like.models.task_modules.multiclass_nms import (
    batched_soft_nms,
    multiclass_nms,
)
from mmdet_like.models.task_modules.point_generator import MlvlPointGenerator
from mmdet_like.models.task_modules.pseudo_sampler import PseudoSampler
from mmdet_like.models.task_modules.random_sampler import RandomSampler, random_subset
from mmdet_like.models.task_modules.sampling_result import SamplingResult

__all__ = [
    "ATSSAssigner",
    "AnchorGenerator",
    "AssignResult",
    "BBoxL1Cost",
    "BaseAssigner",
    "BaseMatchCost",
    "BboxOverlaps2D",
    "ClassificationCost",
    "DeltaXYWHBBoxCoder",
    "DistancePointBBoxCoder",
    "FocalLossCost",
    "HungarianAssigner",
    "IoUCost",
    "MaxIoUAssigner",
    "MlvlPointGenerator",
    "PseudoSampler",
    "RandomSampler",
    "SamplingResult",
    "batched_soft_nms",
    "multiclass_nms",
    "random_subset",
]
