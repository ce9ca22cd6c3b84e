"""Element-wise loss weighting and reduction shared by the losses."""

import torch

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def avg_factor_eps(dtype):
    """What ``avg_factor`` is increased by (mmdetection's guard against dividing by 0): the
    float32 machine epsilon, or float64's for a float64 loss (float32's would change a
    float64 loss by 1.2e-7 / avg_factor, far above float64 rounding)."""
    return torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps


def reduce_loss(loss, reduction):
    """Reduce an element-wise loss by ``"none"``, ``"mean"`` or ``"sum"``."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    """Multiply the element-wise ``loss`` by ``weight`` (broadcast) and reduce.

    With ``avg_factor``, ``"mean"`` is ``sum / avg_factor`` (e.g. the number of positives)
    instead of the element mean; ``"sum"`` with ``avg_factor`` is an error.
    """
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == "mean":
        return loss.sum() / (avg_factor + avg_factor_eps(loss.dtype))
    if reduction == "sum":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss
