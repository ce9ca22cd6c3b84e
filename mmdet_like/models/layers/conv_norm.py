"""A convolution followed by a normalisation, with the normalisation folded into the
convolution whenever its statistics are fixed.

A batch norm in eval mode (``norm_eval=True``, frozen stages, inference) or a
``FrozenBatchNorm2d`` is a per-channel affine map ``y * scale + shift``. Folding it into the
convolution (weights times ``scale``, ``shift`` as the bias) gives the same result without the
two extra passes over the feature map that the separate multiply and add make, forward and
backward; gradients still reach the norm's trainable ``weight`` and ``bias`` through
``scale`` and ``shift``. In train mode a batch norm needs the batch statistics, so it runs
unfolded.
"""

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_like.models.layers.norm import FrozenBatchNorm2d


def fixed_affine(norm):
    """``(scale, shift)`` of shape (C,) when ``norm`` is an affine map now, else ``None``."""
    if isinstance(norm, FrozenBatchNorm2d):
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        return scale, norm.bias - norm.running_mean * scale
    if isinstance(norm, _BatchNorm) and not norm.training and norm.running_var is not None:
        scale = (norm.running_var + norm.eps).rsqrt()
        if norm.weight is not None:
            scale = norm.weight * scale
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = norm.bias + shift
        return scale, shift
    return None


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x, fold=True):
    """``norm(conv(x))``, folded when ``fold`` and ``norm`` has fixed statistics:
    (N, C_in, H, W) -> (N, C_out, H', W')."""
    affine = fixed_affine(norm) if fold else None
    if affine is None:
        return norm(conv(x))
    scale, shift = affine
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv._conv_forward(x, weight, bias)
