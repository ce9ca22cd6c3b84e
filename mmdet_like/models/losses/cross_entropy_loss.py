"""Cross-entropy losses: softmax over classes, per-class sigmoid, and per-instance masks."""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.losses.utils import check_reduction, weight_reduce_loss
from mmdet_like.registry import LOSSES


def cross_entropy(
    pred,
    label,
    weight=None,
    reduction="mean",
    avg_factor=None,
    class_weight=None,
    ignore_index=-100,
):
    """Softmax cross entropy: pred (N, C) logits, label (N,) in ``[0, C)``, weight (N,)."""
    loss = F.cross_entropy(
        pred, label, weight=class_weight, reduction="none", ignore_index=ignore_index
    )
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def expand_onehot_labels(labels, label_weights, num_classes):
    """(N,) labels (``num_classes`` or negative = background) -> (N, C) one-hot targets, and
    (N,) weights expanded to (N, C)."""
    valid = (labels >= 0) & (labels < num_classes)
    onehot = F.one_hot(labels.clamp(0, num_classes - 1).long(), num_classes) * valid[:, None]
    if label_weights is not None:
        label_weights = label_weights.view(-1, 1).expand(-1, num_classes)
    return onehot.to(torch.float32), label_weights


def binary_cross_entropy(
    pred, label, weight=None, reduction="mean", avg_factor=None, class_weight=None
):
    """Sigmoid cross entropy per class.

    pred (N, C) logits; label either (N, C) targets in [0, 1] or (N,) class indices (index C
    or below 0: background, all-zero targets); weight (N,) or (N, C).
    """
    if pred.dim() != label.dim():
        label, weight = expand_onehot_labels(label, weight, pred.size(-1))
    loss = F.binary_cross_entropy_with_logits(
        pred, label.to(pred.dtype), pos_weight=None, reduction="none"
    )
    if class_weight is not None:
        loss = loss * class_weight
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def mask_cross_entropy(pred, target, label, reduction="mean", avg_factor=None, class_weight=None):
    """Sigmoid cross entropy of each instance's mask in its own class's channel.

    pred (N, C, H, W) logits, target (N, H, W) binary masks, label (N,) classes.
    """
    inds = torch.arange(pred.size(0), device=pred.device)
    pred_slice = pred[inds, label]
    loss = F.binary_cross_entropy_with_logits(pred_slice, target.to(pred.dtype), reduction="none")
    if class_weight is not None:
        loss = loss * class_weight[label].view(-1, 1, 1)
    if avg_factor is not None:
        return weight_reduce_loss(loss.flatten(1).mean(1), None, reduction, avg_factor)
    return weight_reduce_loss(loss, None, reduction)


@LOSSES.register()
class CrossEntropyLoss(nn.Module):
    """Cross entropy (softmax by default; ``use_sigmoid`` or ``use_mask`` for the others).

    forward(cls_score, label, weight=None, avg_factor=None, reduction_override=None) -> loss;
    for masks ``weight`` is unused and ``label`` is passed as the third argument ``mask_label``.
    """

    def __init__(
        self,
        use_sigmoid=False,
        use_mask=False,
        reduction="mean",
        class_weight=None,
        loss_weight=1.0,
        ignore_index=-100,
    ):
        super().__init__()
        if use_sigmoid and use_mask:
            raise ValueError("CrossEntropyLoss: use_sigmoid and use_mask are exclusive")
        self.use_sigmoid = use_sigmoid
        self.use_mask = use_mask
        self.reduction = check_reduction(reduction)
        self.class_weight = class_weight
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index

    def forward(
        self,
        cls_score,
        label,
        weight=None,
        avg_factor=None,
        reduction_override=None,
        mask_label=None,
    ):
        reduction = check_reduction(reduction_override or self.reduction)
        class_weight = None
        if self.class_weight is not None:
            class_weight = cls_score.new_tensor(self.class_weight)
        if self.use_mask:
            if mask_label is None:
                raise ValueError("CrossEntropyLoss(use_mask=True) needs mask_label (N,)")
            loss = mask_cross_entropy(
                cls_score, label, mask_label, reduction, avg_factor, class_weight
            )
        elif self.use_sigmoid:
            loss = binary_cross_entropy(
                cls_score, label, weight, reduction, avg_factor, class_weight
            )
        else:
            loss = cross_entropy(
                cls_score, label, weight, reduction, avg_factor, class_weight, self.ignore_index
            )
        return self.loss_weight * loss
