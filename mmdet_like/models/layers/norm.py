"""Normalisation layers built from a ``norm_cfg`` dict: ``BN``, ``SyncBN``, ``GN``, ``FrozenBN``.

``norm_cfg = dict(type="BN", requires_grad=True, eps=1e-5, ...)``: ``requires_grad=False``
keeps the affine parameters fixed; the other keys go to the layer's constructor.
"""

import torch
from torch import nn

from mmdet_like.registry import NORM_LAYERS, build_from_cfg

NORM_LAYERS.register("BN")(nn.BatchNorm2d)
NORM_LAYERS.register("SyncBN")(nn.SyncBatchNorm)


@NORM_LAYERS.register("GN")
class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` taking the channel count first, like the batch norms: (N, C, ...)."""

    def __init__(self, num_features, num_groups=32, eps=1e-5, affine=True):
        super().__init__(num_groups, num_features, eps=eps, affine=affine)


@NORM_LAYERS.register("FrozenBN")
class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all buffers: (N, C, H, W) -> same.

    Loads ``nn.BatchNorm2d`` state dicts (``num_batches_tracked`` is dropped).
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}"


def build_norm_layer(norm_cfg, num_features):
    """``norm_cfg`` dict + channel count -> normalisation module."""
    cfg = dict(norm_cfg)
    requires_grad = cfg.pop("requires_grad", True)
    layer = build_from_cfg(cfg, NORM_LAYERS, default_args={"num_features": num_features})
    for param in layer.parameters():
        param.requires_grad_(requires_grad)
    return layer
