"""Non-local block (Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018)."""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.layers import build_norm_layer
from mmdet_like.registry import PLUGIN_LAYERS

MODES = ("embedded_gaussian", "dot_product")


@PLUGIN_LAYERS.register()
class NonLocal2d(nn.Module):
    """Non-local block: every position attends to every position; (N, C, H, W) -> same.

    ``theta``, ``phi`` and ``g`` are 1x1 convs to ``C // reduction`` channels; with ``P`` the
    H * W query positions and ``M`` the key positions (``P``, or ``floor(H / 2) *
    floor(W / 2)`` with ``sub_sample``), ``y = f(theta^T phi) g^T`` (P x C'), and the block
    returns ``x + conv_out(y)`` (``conv_out`` a 1x1 conv back to C, then the optional norm).

    Args:
        in_channels: C (set by the backbone from the insertion point).
        reduction: C' = C // reduction inner channels.
        use_scale: embedded Gaussian only: the pairwise products are MULTIPLIED by
            ``1 / sqrt(C')`` before the softmax (as in scaled dot-product attention).
        mode: ``"embedded_gaussian"``: ``f = softmax over keys(theta^T phi * scale)``;
            ``"dot_product"``: ``f = theta^T phi / M`` (then computed as
            ``theta^T (phi g^T) / M``, linear in P).
        sub_sample: 2x2 max pooling of ``phi`` and ``g`` (M is a quarter of P).
        zeros_init: zero ``conv_out`` (its norm's scale and shift when ``norm_cfg`` is set)
            so the block starts as the identity; otherwise normal(std 0.01).
        norm_cfg: optional norm after ``conv_out``, e.g. ``dict(type="BN")``.
    """

    def __init__(
        self,
        in_channels,
        reduction=2,
        use_scale=True,
        mode="embedded_gaussian",
        sub_sample=False,
        zeros_init=True,
        norm_cfg=None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"NonLocal2d: mode must be one of {MODES}, got {mode!r}")
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"NonLocal2d: reduction must be a positive int, got {reduction!r}")
        inter_channels = in_channels // reduction
        if inter_channels < 1:
            raise ValueError(
                f"NonLocal2d: in_channels={in_channels} // reduction={reduction} leaves no "
                "inner channels; lower reduction"
            )
        self.in_channels = in_channels
        self.inter_channels = inter_channels
        self.use_scale = use_scale
        self.mode = mode
        self.sub_sample = sub_sample
        self.zeros_init = zeros_init
        self.theta = nn.Conv2d(in_channels, inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, inter_channels, 1)
        self.g = nn.Conv2d(in_channels, inter_channels, 1)
        self.conv_out = nn.Conv2d(inter_channels, in_channels, 1, bias=norm_cfg is None)
        self.norm = None if norm_cfg is None else build_norm_layer(norm_cfg, in_channels)
        if self.norm is not None and getattr(self.norm, "weight", None) is None:
            raise ValueError(
                f"NonLocal2d: norm_cfg={norm_cfg!r} builds a norm without a scale; use an "
                "affine norm (the scale is what zeros_init zeroes)"
            )
        self.pool = nn.MaxPool2d(2) if sub_sample else None
        self.init_weights()

    def init_weights(self):
        """normal(std 0.01) convs with zero biases, a unit norm; then ``zeros_init`` zeroes
        the last layer (``conv_out``, or its norm's scale)."""
        for conv in (self.theta, self.phi, self.g, self.conv_out):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        if self.norm is not None:
            nn.init.ones_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)
        if self.zeros_init:
            nn.init.zeros_(self.conv_out.weight if self.norm is None else self.norm.weight)

    def forward(self, x):
        """(N, C, H, W) -> (N, C, H, W)."""
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (N, P, C')
        phi, g = self.phi(x), self.g(x)
        if self.pool is not None:
            if h < 2 or w < 2:
                raise ValueError(
                    f"NonLocal2d: sub_sample needs feature maps of at least 2x2, got {h}x{w}; "
                    "set sub_sample=False or use the block at a finer stage"
                )
            phi, g = self.pool(phi), self.pool(g)
        phi = phi.flatten(2).transpose(1, 2)  # (N, M, C')
        g = g.flatten(2).transpose(1, 2)  # (N, M, C')
        if self.mode == "embedded_gaussian":
            scale = self.inter_channels**-0.5 if self.use_scale else 1.0
            y = F.scaled_dot_product_attention(theta, phi, g, scale=scale)  # (N, P, C')
        else:  # (theta phi^T / M) g == theta (phi^T g) / M, without the P x M matrix
            y = torch.bmm(theta, torch.bmm(phi.transpose(1, 2), g)) / phi.shape[1]
        out = self.conv_out(y.transpose(1, 2).reshape(n, self.inter_channels, h, w))
        if self.norm is not None:
            out = self.norm(out)
        return x + out
