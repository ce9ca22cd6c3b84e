"""Sigmoid focal loss (Lin et al. 2017, RetinaNet), with a memory-lean backward.

For logits ``x`` (N, C) and one-hot targets ``t`` built from class labels, with
``p = sigmoid(x)``, ``p_t = p`` where ``t = 1`` and ``1 - p`` elsewhere, and ``alpha_t``
likewise ``alpha`` / ``1 - alpha``::

    loss = -alpha_t * (1 - p_t) ** gamma * log(p_t)

The reduced loss (``"mean"`` / ``"sum"``) goes through :class:`_SigmoidFocalLossSum`, an
autograd function that keeps only its inputs for the backward pass (the logits, which the
head's graph holds anyway, the (N,) labels and weights) and recomputes the gradient from them:
no (N, C) intermediate (probabilities, one-hot targets, modulating factors) lives between the
forward and the backward pass, where autograd through the formula keeps about six
(``tests/models/test_focal_loss.py`` measures the saved tensors).
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.losses.utils import check_reduction, weight_reduce_loss
from mmdet_like.registry import LOSSES


def _onehot(labels, num_classes, dtype):
    """(N,) labels -> (N, C) targets: 1 at the label, 0 elsewhere (labels outside ``[0, C)``,
    the background or ignored anchors, are all zeros)."""
    valid = (labels >= 0) & (labels < num_classes)
    target = F.one_hot(labels.clamp(0, num_classes - 1), num_classes).to(dtype)
    return target * valid[:, None].to(dtype)


def sigmoid_focal_loss(pred, target, gamma=2.0, alpha=0.25):
    """Element-wise focal loss of logits ``pred`` (N, C) and targets ``target`` (N, C) in
    {0, 1}, through autograd; ``alpha < 0`` applies no class balance."""
    logp = F.logsigmoid(pred)
    log1mp = F.logsigmoid(-pred)
    p = logp.exp()
    positive = target * (1 - p) ** gamma * -logp
    negative = (1 - target) * p**gamma * -log1mp
    if alpha >= 0:
        return alpha * positive + (1 - alpha) * negative
    return positive + negative


def _focal_terms(pred, labels, gamma, alpha):
    """Element-wise loss and its derivative with respect to ``pred``, (N, C) each, computed
    without autograd (in float32 for half-precision logits)."""
    x = pred if pred.dtype in (torch.float32, torch.float64) else pred.float()
    target = _onehot(labels, x.size(1), x.dtype)
    logp, log1mp = F.logsigmoid(x), F.logsigmoid(-x)
    p = logp.exp()
    a_pos, a_neg = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    one_minus_p = 1 - p
    pos_mod, neg_mod = one_minus_p**gamma, p**gamma
    loss = target * (a_pos * pos_mod * -logp) + (1 - target) * (a_neg * neg_mod * -log1mp)
    # d/dx of -(1-p)^g log p:       (1-p)^g (g p log p - (1-p))
    # d/dx of -p^g log(1-p):         p^g (p - g (1-p) log(1-p))
    grad = target * (a_pos * pos_mod * (gamma * p * logp - one_minus_p)) + (1 - target) * (
        a_neg * neg_mod * (p - gamma * one_minus_p * log1mp)
    )
    return loss, grad


class _SigmoidFocalLossSum(torch.autograd.Function):
    """``sum(weight[:, None] * focal(pred, labels))``; saves only its inputs."""

    @staticmethod
    def forward(ctx, pred, labels, weight, gamma, alpha):
        loss, _ = _focal_terms(pred, labels, gamma, alpha)
        if weight is not None:
            loss = loss * weight.to(loss.dtype)[:, None]
        ctx.save_for_backward(pred, labels, weight)
        ctx.gamma, ctx.alpha = gamma, alpha
        return loss.sum().to(pred.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        pred, labels, weight = ctx.saved_tensors
        _, grad = _focal_terms(pred, labels, ctx.gamma, ctx.alpha)
        scale = grad_output.to(grad.dtype)
        if weight is not None:
            grad = grad * (weight.to(grad.dtype)[:, None] * scale)
        else:
            grad = grad * scale
        return grad.to(pred.dtype), None, None, None, None


def focal_loss_sum(pred, labels, weight=None, gamma=2.0, alpha=0.25):
    """Sum of the focal loss of logits ``pred`` (N, C) against class ``labels`` (N,) (int64;
    ``C`` or negative: background), each row weighted by ``weight`` (N,) if given."""
    return _SigmoidFocalLossSum.apply(pred, labels.long(), weight, gamma, alpha)


@LOSSES.register()
class FocalLoss(nn.Module):
    """Sigmoid focal loss over classes.

    Args:
        use_sigmoid: must be True (the softmax form is not provided).
        gamma, alpha: focusing and balance parameters (``alpha < 0``: no balance).
        reduction: ``"mean"`` (the sum over anchors and classes divided by ``avg_factor``,
            e.g. the number of positive anchors; the element mean without it), ``"sum"``,
            ``"none"`` ((N, C) element-wise, through autograd).
        loss_weight: factor of the loss.
        ignore_index: label of anchors that take no part (their row weight is 0).

    forward(pred (N, C) logits, target (N,) labels in ``[0, C]`` (``C``: background),
    weight (N,) or None, avg_factor, reduction_override) -> loss.
    """

    use_sigmoid = True

    def __init__(
        self, use_sigmoid=True, gamma=2.0, alpha=0.25, reduction="mean", loss_weight=1.0,
        ignore_index=-1,
    ):  # fmt: skip
        super().__init__()
        if not use_sigmoid:
            raise ValueError(
                "FocalLoss: only the sigmoid focal loss is provided (use_sigmoid=True)"
            )
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.reduction = check_reduction(reduction)
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        reduction = check_reduction(reduction_override or self.reduction)
        if pred.dim() != 2 or target.shape != pred.shape[:1]:
            raise ValueError(
                f"FocalLoss: pred must be (N, C) and target (N,) labels, got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        ignored = target == self.ignore_index
        if ignored.any():
            keep = (~ignored).to(pred.dtype)
            weight = keep if weight is None else weight * keep
        if reduction == "none":
            target_onehot = _onehot(target.long(), pred.size(1), pred.dtype)
            loss = sigmoid_focal_loss(pred, target_onehot, self.gamma, self.alpha)
            row_weight = None if weight is None else weight[:, None]
            return self.loss_weight * weight_reduce_loss(loss, row_weight, "none")
        total = focal_loss_sum(pred, target, weight, self.gamma, self.alpha)
        if reduction == "sum":
            if avg_factor is not None:
                raise ValueError('avg_factor can not be used with reduction="sum"')
            return self.loss_weight * total
        if avg_factor is None:
            return self.loss_weight * total / max(pred.numel(), 1)
        return self.loss_weight * total / (avg_factor + torch.finfo(torch.float32).eps)
