"""Global context block (Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond", ICCV Workshops 2019)."""

import torch
from torch import nn

from mmdet_like.registry import PLUGIN_LAYERS

POOLING_TYPES = ("att", "avg")
FUSION_TYPES = ("channel_add", "channel_mul")


def _transform(channels, hidden):
    """1x1 conv -> LayerNorm -> ReLU -> 1x1 conv: (N, C, 1, 1) -> (N, C, 1, 1)."""
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1),
        nn.LayerNorm([hidden, 1, 1]),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1),
    )


@PLUGIN_LAYERS.register()
class ContextBlock(nn.Module):
    """Global context block: one context vector per image, fused into every position;
    (N, C, H, W) -> same.

    The context is the features pooled over all positions: weighted by a softmax over the
    positions of a 1x1 conv's single-channel mask (``"att"``), or averaged (``"avg"``). A
    bottleneck transform (1x1 conv to ``C * ratio`` channels, LayerNorm, ReLU, 1x1 conv back
    to C) turns it into a per-channel term that is added to every position
    (``"channel_add"``) and/or scales it (``"channel_mul"``, applied first).

    The last conv of each transform starts at zero, so the block starts as the identity:
    ``channel_add`` adds 0, and ``channel_mul`` scales by ``2 * sigmoid(term)``, which is 1
    at zero (GCNet's ``sigmoid(term)`` would halve the features of a pretrained backbone).
    The factor 2 lets the gate range over (0, 2).

    Args:
        in_channels: C (set by the backbone from the insertion point).
        ratio: hidden channels of the transforms, ``int(C * ratio)`` (at least 2, since the
            LayerNorm of one channel is a constant).
        pooling_type: ``"att"`` or ``"avg"``.
        fusion_types: a non-empty tuple of ``"channel_add"``, ``"channel_mul"``.
    """

    def __init__(
        self, in_channels, ratio=1 / 16, pooling_type="att", fusion_types=("channel_add",)
    ):
        super().__init__()
        if pooling_type not in POOLING_TYPES:
            raise ValueError(
                f"ContextBlock: pooling_type must be one of {POOLING_TYPES}, got {pooling_type!r}"
            )
        fusion_types = tuple(fusion_types) if isinstance(fusion_types, (list, tuple)) else ()
        if (
            not fusion_types
            or len(set(fusion_types)) != len(fusion_types)
            or not set(fusion_types) <= set(FUSION_TYPES)
        ):
            raise ValueError(
                "ContextBlock: fusion_types must be a non-empty tuple of distinct entries of "
                f"{FUSION_TYPES}, e.g. ('channel_add',); got {fusion_types!r}"
            )
        hidden = int(in_channels * ratio)
        if hidden < 2:
            raise ValueError(
                f"ContextBlock: in_channels={in_channels} * ratio={ratio} gives {hidden} "
                "hidden channels, at least 2 are needed; raise ratio or place the block where "
                "there are more channels"
            )
        self.in_channels = in_channels
        self.hidden_channels = hidden
        self.pooling_type = pooling_type
        self.fusion_types = fusion_types
        self.conv_mask = nn.Conv2d(in_channels, 1, 1) if pooling_type == "att" else None
        self.channel_add_conv = (
            _transform(in_channels, hidden) if "channel_add" in fusion_types else None
        )
        self.channel_mul_conv = (
            _transform(in_channels, hidden) if "channel_mul" in fusion_types else None
        )
        self.init_weights()

    def init_weights(self):
        """Kaiming-normal (fan in) convs, unit LayerNorms, the transforms' last convs zero."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for transform in (self.channel_add_conv, self.channel_mul_conv):
            if transform is not None:
                nn.init.zeros_(transform[-1].weight)

    def context(self, x):
        """(N, C, H, W) -> (N, C, 1, 1) pooled context."""
        if self.conv_mask is None:
            return x.mean(dim=(2, 3), keepdim=True)
        weights = self.conv_mask(x).flatten(1).softmax(dim=1)  # (N, H * W)
        pooled = torch.bmm(x.flatten(2), weights.unsqueeze(2))  # (N, C, 1)
        return pooled.unsqueeze(3)

    def forward(self, x):
        """(N, C, H, W) -> (N, C, H, W)."""
        context = self.context(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * (2 * torch.sigmoid(self.channel_mul_conv(context)))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
