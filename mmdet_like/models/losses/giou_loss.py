"""IoU losses on aligned box pairs: generalised IoU (Rezatofighi et al. 2019) and the
plain IoU loss (UnitBox, FCOS)."""

from torch import nn

from mmdet_like.models.losses.utils import check_reduction, weight_reduce_loss
from mmdet_like.registry import LOSSES
from mmdet_like.structures import bbox_overlaps


def giou_loss(pred, target, eps=1e-7):
    """(N, 4) predicted and (N, 4) target ``[x1, y1, x2, y2]`` -> (N,) ``1 - GIoU``."""
    return 1 - bbox_overlaps(pred, target, mode="giou", is_aligned=True, eps=eps)


@LOSSES.register()
class GIoULoss(nn.Module):
    """forward(pred (N, 4), target (N, 4), weight (N,) or (N, 4), avg_factor, reduction_override).

    A (N, 4) weight (as box heads produce) is averaged over the coordinates.
    """

    def __init__(self, eps=1e-6, reduction="mean", loss_weight=1.0):
        super().__init__()
        self.eps = eps
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        if pred.shape != target.shape:
            raise ValueError(
                f"GIoULoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ"
            )
        reduction = check_reduction(reduction_override or self.reduction)
        if weight is not None and weight.dim() == pred.dim():
            weight = weight.mean(-1)
        loss = giou_loss(pred, target, self.eps)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


def iou_loss(pred, target, linear=False, eps=1e-6):
    """(N, 4) predicted and (N, 4) target boxes -> (N,) ``-log IoU`` (UnitBox, FCOS) or, with
    ``linear``, ``1 - IoU``."""
    ious = bbox_overlaps(pred, target, mode="iou", is_aligned=True, eps=eps).clamp(min=eps)
    return 1 - ious if linear else -ious.log()


@LOSSES.register()
class IoULoss(nn.Module):
    """forward(pred (N, 4), target (N, 4), weight (N,) or (N, 4), avg_factor,
    reduction_override): ``-log IoU`` (``linear=True``: ``1 - IoU``) of aligned box pairs."""

    def __init__(self, linear=False, eps=1e-6, reduction="mean", loss_weight=1.0):
        super().__init__()
        self.linear = linear
        self.eps = eps
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        if pred.shape != target.shape:
            raise ValueError(
                f"IoULoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ"
            )
        reduction = check_reduction(reduction_override or self.reduction)
        if weight is not None and weight.dim() == pred.dim():
            weight = weight.mean(-1)
        loss = iou_loss(pred, target, self.linear, self.eps)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)
