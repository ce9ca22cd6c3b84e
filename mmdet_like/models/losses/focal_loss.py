"""Sigmoid focal loss (Lin et al. 2017, RetinaNet), with a memory-lean backward.

For logits ``x`` (N, C) and one-hot targets ``t`` built from class labels, with
``p = sigmoid(x)``, ``p_t = p`` where ``t = 1`` and ``1 - p`` elsewhere, and ``alpha_t``
likewise ``alpha`` / ``1 - alpha``::

    loss = -alpha_t * (1 - p_t) ** gamma * log(p_t)

The reduced loss (``"mean"`` / ``"sum"``) goes through :class:`_SigmoidFocalLossSum`, an
autograd function that keeps only its inputs for the backward pass (the logits, which the
head's graph holds anyway, the (N,) labels and weights) and recomputes the gradient from them:
no (N, C) intermediate (probabilities, one-hot targets, modulating factors) lives between the
forward and the backward pass, where autograd through the formula keeps about six. Both
passes work through the rows in chunks of about ``CHUNK_ELEMENTS`` elements, so the
temporaries of the formula never exceed a few chunks either: the loss's memory is its input
and, in backward, the (N, C) gradient (``tests/models/test_focal_loss.py`` measures both the
saved tensors and the peak of each pass).
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.losses.utils import avg_factor_eps, check_reduction, weight_reduce_loss
from mmdet_like.registry import LOSSES

# Rows of the logits are processed in chunks of about this many elements (1 MB of float32):
# the formula's dozen temporaries then stay in cache and far below the (N, C) input.
CHUNK_ELEMENTS = 1 << 18


def _onehot(labels, num_classes, dtype):
    """(N,) labels -> (N, C) targets: 1 at the label, 0 elsewhere (labels outside ``[0, C)``,
    the background or ignored anchors, are all zeros)."""
    classes = torch.arange(num_classes, device=labels.device)
    return (labels[:, None] == classes).to(dtype)


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


def _log_sigmoids(x):
    """``(log sigmoid(x), log sigmoid(-x))`` of a tensor, stable for every ``x``:
    ``log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|))`` and ``log sigmoid(-x) = log
    sigmoid(x) - x``. (Five times faster on the CPU than two ``F.logsigmoid`` calls, whose
    kernel, like ``log1p``'s, is not vectorised; ``log(1 + e)`` loses only terms below the
    float's epsilon.)"""
    softplus_of_neg_abs = torch.log(1 + torch.exp(-x.abs()))
    log_p = x.clamp(max=0) - softplus_of_neg_abs
    return log_p, log_p - x


def _focal_terms(pred, labels, gamma, alpha, with_grad):
    """Element-wise loss, or its derivative with respect to ``pred`` (``with_grad``), of
    (n, C) logits, computed without autograd (in float32 for half-precision logits)."""
    x = pred if pred.dtype in (torch.float32, torch.float64) else pred.float()
    target = _onehot(labels, x.size(1), x.dtype)
    logp, log1mp = _log_sigmoids(x)
    p = torch.sigmoid(x)
    a_pos, a_neg = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    one_minus_p = 1 - p
    pos_mod, neg_mod = one_minus_p**gamma, p**gamma
    if not with_grad:
        positive = (a_pos * pos_mod) * -logp
        negative = (a_neg * neg_mod) * -log1mp
    else:
        # d/dx of -(1-p)^g log p:       (1-p)^g (g p log p - (1-p))
        # d/dx of -p^g log(1-p):         p^g (p - g (1-p) log(1-p))
        positive = (a_pos * pos_mod) * (gamma * p * logp - one_minus_p)
        negative = (a_neg * neg_mod) * (p - gamma * one_minus_p * log1mp)
    # target * positive + (1 - target) * negative
    return negative.add_(target.mul_(positive.sub_(negative)))


def _row_chunks(num_rows, num_cols):
    """``slice`` objects over the rows, each of about ``CHUNK_ELEMENTS`` elements."""
    step = max(1, CHUNK_ELEMENTS // max(num_cols, 1))
    return [slice(start, start + step) for start in range(0, num_rows, step)]


class _SigmoidFocalLossSum(torch.autograd.Function):
    """``sum(weight[:, None] * focal(pred, labels))``; saves only its inputs and works
    through the rows in chunks (no (N, C) temporary in either pass but the gradient)."""

    @staticmethod
    def forward(ctx, pred, labels, weight, gamma, alpha):
        acc_dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
        total = pred.new_zeros((), dtype=acc_dtype)
        for rows in _row_chunks(pred.size(0), pred.size(1)):
            loss = _focal_terms(pred[rows], labels[rows], gamma, alpha, with_grad=False)
            if weight is not None:
                loss = loss * weight[rows].to(loss.dtype)[:, None]
            total += loss.sum(dtype=acc_dtype)
        ctx.save_for_backward(pred, labels, weight)
        ctx.gamma, ctx.alpha = gamma, alpha
        return total.to(pred.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        pred, labels, weight = ctx.saved_tensors
        grad = torch.empty_like(pred)
        for rows in _row_chunks(pred.size(0), pred.size(1)):
            part = _focal_terms(pred[rows], labels[rows], ctx.gamma, ctx.alpha, with_grad=True)
            scale = grad_output.to(part.dtype)
            if weight is not None:
                scale = weight[rows].to(part.dtype)[:, None] * scale
            torch.mul(part, scale, out=part)
            grad[rows] = part
        return grad, None, None, None, None


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
        return self.loss_weight * total / (avg_factor + avg_factor_eps(total.dtype))
