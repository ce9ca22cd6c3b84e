"""Fold BatchNorm layers into the convolutions before them, for faster inference."""

import torch
from torch import nn

from mmdet_like.models.layers.norm import FrozenBatchNorm2d


def _is_fusable_norm(module):
    if isinstance(module, FrozenBatchNorm2d):
        return True
    return (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        and module.track_running_stats
        and module.running_mean is not None
    )


def _fuse_conv_bn(conv, bn):
    """Fold ``bn`` (eval-mode statistics) into ``conv``'s weight and bias, in place."""
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    factor = gamma / torch.sqrt(bn.running_var + bn.eps)
    shape = [-1] + [1] * (weight.dim() - 1)
    conv.weight = nn.Parameter(weight * factor.reshape(shape))
    conv.bias = nn.Parameter((bias - bn.running_mean) * factor + beta)
    return conv


def fuse_conv_bn(module):
    """Fold every BatchNorm that directly follows a convolution inside the same parent
    module (registration order, as in ``conv1``/``bn1`` or ``nn.Sequential(conv, bn)``) into
    that convolution, and replace the BatchNorm with ``nn.Identity``.

    Only for inference: the fused model computes the same outputs as the original one in
    ``eval()`` mode. ``FrozenBN`` layers are folded too; BatchNorms without running
    statistics are left alone. Returns ``module`` (changed in place).
    """
    last_conv = None
    with torch.no_grad():
        for name, child in module.named_children():
            if (
                _is_fusable_norm(child)
                and last_conv is not None
                and last_conv.out_channels == child.num_features
            ):
                _fuse_conv_bn(last_conv, child)
                module._modules[name] = nn.Identity()
                last_conv = None
            elif isinstance(child, nn.modules.conv._ConvNd) and not isinstance(
                child, nn.modules.conv._ConvTransposeNd
            ):
                last_conv = child
            else:
                fuse_conv_bn(child)
                last_conv = None
    return module
