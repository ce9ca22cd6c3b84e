"""Fusion of neighbouring backbone stages, a backbone plugin at ``position="after_backbone"``."""

import torch.nn.functional as F
from torch import nn

from mmdet_like.registry import PLUGIN_LAYERS

UPSAMPLE_MODES = ("nearest", "bilinear")
DOWNSAMPLE_MODES = ("max", "avg")


@PLUGIN_LAYERS.register()
class StageFusion(nn.Module):
    """Each stage output gets its neighbours' outputs added, resized to its scale: L maps
    ``(N, C_i, H_i, W_i)`` -> L maps ``(N, out_i, H_i, W_i)``.

    Output ``i`` is ``x_i + up(conv(x_{i+1})) + conv(down(x_{i-1}))``: the coarser
    neighbour is projected by a 1x1 conv at its own resolution and interpolated to stage
    ``i``'s size (``upsample_mode``); the finer one is max or average pooled to that size
    (windows of the stride between the two, ceil mode: 2x2 stride 2 between consecutive
    stages) and then projected. The
    fusion convs start at zero, so at initialisation the outputs equal the inputs (as in
    feature-fusion backbones such as HRNet's exchange units, Sun et al., CVPR 2019, here
    between neighbours only).

    Args:
        in_channels: the channels of the stage outputs, finest first (set by the backbone
            from its ``out_indices``).
        out_channels: ``None`` (the default; the shapes are kept) or an int / list: a stage
            whose width changes gets ``x_i`` through a 1x1 conv (Kaiming-initialised, so then
            not the identity at initialisation). A backbone's ``after_backbone`` position
            needs the shapes kept.
        upsample_mode: ``"nearest"`` or ``"bilinear"`` (``align_corners=False``).
        downsample_mode: ``"max"`` or ``"avg"``.
    """

    def __init__(self, in_channels, out_channels=None, upsample_mode="nearest",
                 downsample_mode="max"):  # fmt: skip
        super().__init__()
        if not isinstance(in_channels, (list, tuple)) or len(in_channels) < 2:
            raise ValueError(
                f"StageFusion: in_channels must list the channels of at least 2 stage "
                f"outputs, got {in_channels!r}; give the backbone 2 or more out_indices"
            )
        in_channels = [int(c) for c in in_channels]
        if out_channels is None:
            out_channels = list(in_channels)
        elif isinstance(out_channels, int):
            out_channels = [out_channels] * len(in_channels)
        else:
            out_channels = [int(c) for c in out_channels]
        if len(out_channels) != len(in_channels) or min(out_channels) < 1:
            raise ValueError(
                f"StageFusion: out_channels {out_channels} must be positive, one per stage of "
                f"in_channels {in_channels} (or one int, or None to keep them)"
            )
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(
                f"StageFusion: upsample_mode must be one of {UPSAMPLE_MODES}, got {upsample_mode!r}"
            )
        if downsample_mode not in DOWNSAMPLE_MODES:
            raise ValueError(
                f"StageFusion: downsample_mode must be one of {DOWNSAMPLE_MODES}, "
                f"got {downsample_mode!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.upsample_mode = upsample_mode
        self.downsample_mode = downsample_mode
        num = len(in_channels)
        # from_coarser[i]: stage i + 1 -> stage i; from_finer[i]: stage i -> stage i + 1
        self.from_coarser = nn.ModuleList(
            nn.Conv2d(in_channels[i + 1], out_channels[i], 1) for i in range(num - 1)
        )
        self.from_finer = nn.ModuleList(
            nn.Conv2d(in_channels[i], out_channels[i + 1], 1) for i in range(num - 1)
        )
        self.output_projections = nn.ModuleList(
            nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
            for c_in, c_out in zip(in_channels, out_channels)
        )
        self.init_weights()

    def init_weights(self):
        """Zero fusion convs; Kaiming-normal projections of stages whose width changes."""
        for conv in (*self.from_coarser, *self.from_finer):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        for conv in self.output_projections:
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)

    def _up(self, x, size):
        if self.upsample_mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def _down(self, x, size):
        """Pool ``x`` to ``size``: windows of the stride that gives ``size`` (ceil mode, as a
        strided conv's grid), else adaptive windows."""
        (h, w), (th, tw) = x.shape[-2:], size
        stride = (-(-h // th), -(-w // tw))
        if (-(-h // stride[0]), -(-w // stride[1])) != (th, tw):
            pool = F.adaptive_max_pool2d if self.downsample_mode == "max" else F.adaptive_avg_pool2d
            return pool(x, size)
        pool = F.max_pool2d if self.downsample_mode == "max" else F.avg_pool2d
        return pool(x, stride, stride, ceil_mode=True)

    def forward(self, features):
        """L maps (N, C_i, H_i, W_i), finest first -> tuple of L maps (N, out_i, H_i, W_i)."""
        if len(features) != len(self.in_channels):
            raise ValueError(
                f"StageFusion: built for {len(self.in_channels)} stage outputs, got {len(features)}"
            )
        outs = []
        for i, x in enumerate(features):
            size = x.shape[-2:]
            out = self.output_projections[i](x)
            if i + 1 < len(features):
                out = out + self._up(self.from_coarser[i](features[i + 1]), size)
            if i > 0:
                out = out + self.from_finer[i - 1](self._down(features[i - 1], size))
            outs.append(out)
        return tuple(outs)
