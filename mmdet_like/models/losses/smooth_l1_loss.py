"""Smooth L1 (Huber-like) and L1 regression losses."""

import torch
from torch import nn

from mmdet_like.models.losses.utils import check_reduction, weight_reduce_loss
from mmdet_like.registry import LOSSES


def smooth_l1_loss(pred, target, beta=1.0):
    """Element-wise ``0.5 x^2 / beta`` below ``beta``, ``|x| - 0.5 beta`` above; same shape."""
    if beta <= 0:
        return torch.abs(pred - target)
    diff = torch.abs(pred - target)
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def l1_loss(pred, target):
    """Element-wise ``|pred - target|``; same shape."""
    return torch.abs(pred - target)


def _check_shapes(name, pred, target):
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ"
        )


@LOSSES.register()
class SmoothL1Loss(nn.Module):
    """forward(pred (N, 4), target (N, 4), weight (N, 4) or None, avg_factor, reduction_override)
    -> loss (scalar, or (N, 4) with reduction "none")."""

    def __init__(self, beta=1.0, reduction="mean", loss_weight=1.0):
        super().__init__()
        self.beta = beta
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        _check_shapes("SmoothL1Loss", pred, target)
        reduction = check_reduction(reduction_override or self.reduction)
        loss = smooth_l1_loss(pred, target, self.beta)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


@LOSSES.register()
class L1Loss(nn.Module):
    """forward(pred (N, 4), target (N, 4), weight (N, 4) or None, avg_factor, reduction_override)
    -> loss (scalar, or (N, 4) with reduction "none")."""

    def __init__(self, reduction="mean", loss_weight=1.0):
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        _check_shapes("L1Loss", pred, target)
        reduction = check_reduction(reduction_override or self.reduction)
        loss = l1_loss(pred, target)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)
