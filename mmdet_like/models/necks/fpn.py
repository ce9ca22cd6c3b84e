"""Feature Pyramid Network (Lin et al. 2017) with optional extra coarser levels."""

import torch.nn.functional as F
from torch import nn

from mmdet_like.models.layers import build_norm_layer
from mmdet_like.registry import NECKS

EXTRA_CONV_SOURCES = ("on_input", "on_lateral", "on_output")


def conv_norm(in_channels, out_channels, kernel_size, stride=1, norm_cfg=None):
    """A conv (``padding = kernel_size // 2``), followed by a norm when ``norm_cfg`` is set."""
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=norm_cfg is None,
    )
    if norm_cfg is None:
        return conv
    return nn.Sequential(conv, build_norm_layer(norm_cfg, out_channels))


@NECKS.register()
class FPN(nn.Module):
    """Top-down pyramid over backbone levels ``start_level..end_level``, plus extra levels.

    Args:
        in_channels: channels of each backbone output.
        out_channels: channels of every pyramid level.
        num_outs: pyramid levels returned; those beyond the used inputs are "extra" levels.
        start_level, end_level: backbone outputs used (``end_level=-1``: up to the last).
        add_extra_convs: ``False``: extra levels by stride-2 max-pool of the last output;
            ``"on_input"`` (or ``True``), ``"on_lateral"``, ``"on_output"``: the first extra
            level is a stride-2 3x3 conv on the last used backbone input / lateral / output,
            the following ones stride-2 3x3 convs on the previous level.
        relu_before_extra_convs: ReLU before each extra conv after the first.
        norm_cfg: optional norm after each conv (e.g. ``dict(type="GN", num_groups=32)``).

    Forward: tuple of (N, in_channels[i], H_i, W_i) -> tuple of ``num_outs`` (N, out_channels,
    H_j, W_j), finest first, each extra level half the size of the previous one.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        num_outs,
        start_level=0,
        end_level=-1,
        add_extra_convs=False,
        relu_before_extra_convs=False,
        norm_cfg=None,
        upsample_mode="nearest",
    ):
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.start_level = start_level
        self.end_level = len(self.in_channels) if end_level == -1 else end_level + 1
        if not 0 <= start_level < self.end_level <= len(self.in_channels):
            raise ValueError(
                f"FPN: need 0 <= start_level < end_level < {len(self.in_channels)}, got "
                f"start_level={start_level}, end_level={end_level}"
            )
        num_used = self.end_level - start_level
        if num_outs < num_used:
            raise ValueError(f"FPN: num_outs={num_outs} is fewer than the {num_used} levels used")
        if end_level != -1 and num_outs != num_used:
            raise ValueError("FPN: extra levels need end_level=-1 (the last backbone output)")
        if add_extra_convs is True:
            add_extra_convs = "on_input"
        if add_extra_convs not in (False, *EXTRA_CONV_SOURCES):
            raise ValueError(
                f"FPN: add_extra_convs must be False, True or one of {EXTRA_CONV_SOURCES}, "
                f"got {add_extra_convs!r}"
            )
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_mode = upsample_mode

        self.lateral_convs = nn.ModuleList(
            conv_norm(c, out_channels, 1, norm_cfg=norm_cfg)
            for c in self.in_channels[start_level : self.end_level]
        )
        self.fpn_convs = nn.ModuleList(
            conv_norm(out_channels, out_channels, 3, norm_cfg=norm_cfg) for _ in range(num_used)
        )
        self.extra_convs = nn.ModuleList()
        num_extra = num_outs - num_used
        if add_extra_convs:
            for i in range(num_extra):
                source_channels = out_channels
                if i == 0 and add_extra_convs == "on_input":
                    source_channels = self.in_channels[self.end_level - 1]
                self.extra_convs.append(
                    conv_norm(source_channels, out_channels, 3, stride=2, norm_cfg=norm_cfg)
                )
        self.init_weights()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs):
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"FPN: expected {len(self.in_channels)} inputs, got {len(inputs)}")
        used = inputs[self.start_level : self.end_level]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, used)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode=self.upsample_mode
            )
        outs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        num_extra = self.num_outs - len(outs)
        if num_extra and not self.add_extra_convs:
            for _ in range(num_extra):
                outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        elif num_extra:
            source = {
                "on_input": used[-1],
                "on_lateral": laterals[-1],
                "on_output": outs[-1],
            }[self.add_extra_convs]
            outs.append(self.extra_convs[0](source))
            for conv in self.extra_convs[1:]:
                previous = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
                outs.append(conv(previous))
        return tuple(outs)
