"""Varifocal loss (Zhang et al. 2021, VarifocalNet): a sigmoid classifier trained towards
an IoU-aware score, the binary cross-entropy of the logits against soft targets ``q``
weighted by ``q`` on the positives and by ``alpha * sigmoid(x) ** gamma`` elsewhere::

    VFL(x, q) = w * BCE(sigmoid(x), q),   w = q (positive) | alpha * p ** gamma (negative)

RT-DETR trains its classifier with it (alpha 0.75, gamma 2), ``q`` the IoU of each matched
query's box with its gt at the gt's class.
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.losses.utils import check_reduction, weight_reduce_loss
from mmdet_like.registry import LOSSES


def varifocal_loss(pred, target, alpha=0.75, gamma=2.0, iou_weighted=True):
    """(N, C) element-wise loss of (N, C) logits against (N, C) soft targets (mmdetection's
    ``varifocal_loss``): positives where ``target > 0``, weighted by the target
    (``iou_weighted``) or 1; the others by ``alpha * |sigmoid(pred) - target| ** gamma``
    (the gradient flows through this weight, as mmdetection's)."""
    target = target.to(pred.dtype)
    positive = (target > 0).to(pred.dtype)
    pos_weight = target if iou_weighted else torch.ones_like(target)
    weight = pos_weight * positive + alpha * (pred.sigmoid() - target).abs().pow(gamma) * (
        1 - positive
    )
    return F.binary_cross_entropy_with_logits(pred, target, reduction="none") * weight


def varifocal_loss_by_label(pred, labels, scores, alpha=0.75, gamma=2.0):
    """(N, C) element-wise loss, RT-DETR's form: row ``n``'s positive is its class
    ``labels[n]`` (``C`` or negative: none) with target ``scores[n]`` (the IoU) and weight
    ``scores[n]``, even where the IoU is 0; every other entry has target 0 and weight
    ``alpha * sigmoid(pred) ** gamma`` of the detached logits (the authors' and
    transformers' ``loss_labels_vfl``)."""
    num_classes = pred.size(1)
    classes = torch.arange(num_classes, device=pred.device)
    one_hot = (labels[:, None] == classes) & (labels[:, None] >= 0)
    one_hot = one_hot.to(pred.dtype)
    target = one_hot * scores.to(pred.dtype)[:, None]
    weight = alpha * pred.detach().sigmoid().pow(gamma) * (1 - one_hot) + target
    return F.binary_cross_entropy_with_logits(pred, target, weight=weight, reduction="none")


@LOSSES.register()
class VarifocalLoss(nn.Module):
    """Varifocal loss (sigmoid only).

    Args:
        use_sigmoid: must be True.
        alpha, gamma: the negatives' weight ``alpha * p ** gamma`` (0.75, 2).
        iou_weighted: positives weighted by their target (True) or by 1.
        reduction, loss_weight: as the other losses.

    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``:
    ``pred`` (N, C) logits; ``target`` either (N, C) soft targets (mmdetection's form,
    :func:`varifocal_loss`) or ``(labels (N,), scores (N,))`` (RT-DETR's form,
    :func:`varifocal_loss_by_label`: the positive is the labelled class whatever its
    score, the negatives' weights detached; ``iou_weighted`` must be True); ``weight``
    (N,) or (N, C).
    """

    use_sigmoid = True

    def __init__(self, use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True,
                 reduction="mean", loss_weight=1.0):  # fmt: skip
        super().__init__()
        if not use_sigmoid:
            raise ValueError("VarifocalLoss: only the sigmoid form is provided (use_sigmoid=True)")
        if alpha < 0:
            raise ValueError(f"VarifocalLoss: alpha must not be negative, got {alpha}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.iou_weighted = bool(iou_weighted)
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        reduction = check_reduction(reduction_override or self.reduction)
        if pred.dim() != 2:
            raise ValueError(f"VarifocalLoss: pred must be (N, C), got {tuple(pred.shape)}")
        if isinstance(target, (tuple, list)):
            labels, scores = target
            if labels.shape != pred.shape[:1] or scores.shape != labels.shape:
                raise ValueError(
                    f"VarifocalLoss: labels and scores must be (N,) for pred "
                    f"{tuple(pred.shape)}, got {tuple(labels.shape)} and {tuple(scores.shape)}"
                )
            if not self.iou_weighted:
                raise ValueError(
                    "VarifocalLoss: the (labels, scores) target is RT-DETR's IoU-weighted form; "
                    "set iou_weighted=True or give (N, C) targets"
                )
            loss = varifocal_loss_by_label(pred, labels, scores, self.alpha, self.gamma)
        else:
            if target.shape != pred.shape:
                raise ValueError(
                    f"VarifocalLoss: target must be (N, C) like pred {tuple(pred.shape)}, got "
                    f"{tuple(target.shape)}"
                )
            loss = varifocal_loss(pred, target, self.alpha, self.gamma, self.iou_weighted)
        if weight is not None and weight.dim() == 1:
            weight = weight[:, None]
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)
