"""The losses of Generalized Focal Loss (Li et al. 2020, GFL): the quality focal loss of a
joint class-quality score and the distribution focal loss of a box side's discretised
distance.

Quality focal loss: for logits ``x`` (N, C), ``sigma = sigmoid(x)`` and soft targets ``y``
(the IoU quality at the positive's class, 0 at every other class and for negatives)::

    QFL = |y - sigma| ** beta * BCE(sigma, y)

summed over the classes (mmdetection's ``quality_focal_loss``; with ``y`` in {0, 1} and no
alpha it is the sigmoid focal loss).

Distribution focal loss: a distance ``y`` between the bins ``floor(y)`` and ``floor(y) + 1``
of a (reg_max + 1)-bin softmax is learnt by the cross-entropies of both, weighted by
closeness::

    DFL = (floor(y) + 1 - y) * CE(p, floor(y)) + (y - floor(y)) * CE(p, floor(y) + 1)
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.losses.utils import check_reduction, weight_reduce_loss
from mmdet_like.registry import LOSSES


def quality_focal_loss(pred, labels, scores, beta=2.0):
    """(N,) quality focal loss, summed over the classes.

    Args:
        pred: (N, C) logits; labels: (N,) classes (``C`` or negative: background);
            scores: (N,) the quality target of each row at its class (read for positives).
        beta: the modulating exponent.
    """
    num_classes = pred.size(1)
    positive = (labels >= 0) & (labels < num_classes)
    classes = torch.arange(num_classes, device=pred.device)
    at_label = (labels[:, None] == classes) & positive[:, None]
    target = torch.where(at_label, scores.to(pred.dtype)[:, None], pred.new_zeros(()))
    modulating = (target - pred.sigmoid()).abs().pow(beta)
    bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    return (bce * modulating).sum(dim=1)


def distribution_focal_loss(pred, target):
    """(N,) distribution focal loss of (N, n + 1) bin logits and (N,) targets in ``[0, n)``
    (the right bin ``floor(target) + 1`` must exist: encode with ``max_dis=n``, which keeps
    targets below ``n - 0.1``)."""
    left = target.long()
    right = left + 1
    weight_left = right.to(pred.dtype) - target
    weight_right = target - left.to(pred.dtype)
    return (
        F.cross_entropy(pred, left, reduction="none") * weight_left
        + F.cross_entropy(pred, right, reduction="none") * weight_right
    )


@LOSSES.register()
class QualityFocalLoss(nn.Module):
    """Quality focal loss (sigmoid) of a joint class-quality score.

    Args:
        use_sigmoid: must be True (the sigmoid form only, as mmdetection).
        beta: modulating exponent (2 in the paper).
        reduction, loss_weight: as the other losses.

    forward(pred (N, C) logits, target ``(labels (N,), scores (N,))``, weight (N,) or None,
    avg_factor, reduction_override) -> loss.
    """

    use_sigmoid = True

    def __init__(self, use_sigmoid=True, beta=2.0, reduction="mean", loss_weight=1.0):
        super().__init__()
        if not use_sigmoid:
            raise ValueError("QualityFocalLoss: only the sigmoid form is provided")
        self.beta = float(beta)
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        reduction = check_reduction(reduction_override or self.reduction)
        labels, scores = target
        if pred.dim() != 2 or labels.shape != pred.shape[:1] or scores.shape != labels.shape:
            raise ValueError(
                f"QualityFocalLoss: pred must be (N, C), labels and scores (N,), got "
                f"{tuple(pred.shape)}, {tuple(labels.shape)} and {tuple(scores.shape)}"
            )
        loss = quality_focal_loss(pred, labels, scores, self.beta)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


@LOSSES.register()
class DistributionFocalLoss(nn.Module):
    """Distribution focal loss of discretised distances.

    forward(pred (N, n + 1) bin logits, target (N,) distances in bins, weight (N,) or None,
    avg_factor, reduction_override) -> loss.
    """

    def __init__(self, reduction="mean", loss_weight=1.0):
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        reduction = check_reduction(reduction_override or self.reduction)
        if pred.dim() != 2 or target.shape != pred.shape[:1]:
            raise ValueError(
                f"DistributionFocalLoss: pred must be (N, n + 1) and target (N,), got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        loss = distribution_focal_loss(pred, target)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)
