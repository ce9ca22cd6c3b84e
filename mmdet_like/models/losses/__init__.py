"""Losses (registered in ``LOSSES``)."""

from mmdet_like.models.losses.cross_entropy_loss import (
    CrossEntropyLoss,
    binary_cross_entropy,
    cross_entropy,
    mask_cross_entropy,
)
from mmdet_like.models.losses.focal_loss import FocalLoss, focal_loss_sum, sigmoid_focal_loss
from mmdet_like.models.losses.gfocal_loss import (
    DistributionFocalLoss,
    QualityFocalLoss,
    distribution_focal_loss,
    quality_focal_loss,
)
from mmdet_like.models.losses.giou_loss import GIoULoss, IoULoss, giou_loss, iou_loss
from mmdet_like.models.losses.smooth_l1_loss import L1Loss, SmoothL1Loss, l1_loss, smooth_l1_loss
from mmdet_like.models.losses.utils import reduce_loss, weight_reduce_loss
from mmdet_like.models.losses.varifocal_loss import (
    VarifocalLoss,
    varifocal_loss,
    varifocal_loss_by_label,
)

__all__ = [
    "CrossEntropyLoss",
    "DistributionFocalLoss",
    "FocalLoss",
    "GIoULoss",
    "IoULoss",
    "L1Loss",
    "QualityFocalLoss",
    "SmoothL1Loss",
    "VarifocalLoss",
    "binary_cross_entropy",
    "cross_entropy",
    "distribution_focal_loss",
    "focal_loss_sum",
    "giou_loss",
    "iou_loss",
    "l1_loss",
    "mask_cross_entropy",
    "quality_focal_loss",
    "reduce_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "varifocal_loss",
    "varifocal_loss_by_label",
    "weight_reduce_loss",
]
