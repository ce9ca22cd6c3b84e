"""``ChannelMapper`` (mmdetection's): every input level mapped to one width by its own
convolution, optionally more levels by stride-2 convolutions; the neck of the DETR family
(DETR: one 1x1 projection; Deformable DETR and DINO: 1x1 conv + GroupNorm per level and
one extra 3x3 stride-2 level)."""

from torch import nn

from mmdet_like.models.layers import build_norm_layer
from mmdet_like.registry import NECKS

RELU = {"type": "ReLU"}  # mmdetection's default activation (act_cfg=None: none)


def _conv_norm_act(in_channels, out_channels, kernel_size, stride, norm_cfg, act_cfg, bias="auto"):
    """A conv (``padding = (kernel_size - 1) // 2``; a bias without a norm, or as ``bias``
    says when not ``"auto"``), then the
    optional norm and ReLU: the conv alone (no norm, no activation) or an ``nn.Sequential``
    (mmcv's ``ConvModule`` flattened, as the FPN's)."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
        bias=norm_cfg is None if bias == "auto" else bool(bias),
    )  # fmt: skip
    parts = [conv]
    if norm_cfg is not None:
        parts.append(build_norm_layer(norm_cfg, out_channels))
    if act_cfg is not None:
        if dict(act_cfg).get("type") != "ReLU":
            raise ValueError(f"ChannelMapper: act_cfg must be None or dict(type='ReLU'), got "
                             f"{act_cfg!r}")  # fmt: skip
        parts.append(nn.ReLU(inplace=True))
    return conv if len(parts) == 1 else nn.Sequential(*parts)


@NECKS.register()
class ChannelMapper(nn.Module):
    """Map backbone levels to ``out_channels`` each; add stride-2 levels up to ``num_outs``.

    Args:
        in_channels: channels of each input level (the backbone's ``out_channels``).
        out_channels: channels of every output.
        kernel_size: of the per-level convs (1: DETR's input projection; 3 pads by 1).
        norm_cfg: norm after each conv (``dict(type="GN", num_groups=32)``), or ``None``.
        act_cfg: ``dict(type="ReLU")`` (mmdetection's default) or ``None``.
        num_outs: outputs; beyond ``len(in_channels)``: extra levels, the first a 3x3
            stride-2 conv on the last input level, each next one on the previous output
            (Deformable DETR's fourth level). Default: one per input.
        bias: the convs' bias: ``"auto"`` (mmcv's: only without a norm) or a bool
            (``True``: Deformable DETR's and transformers' projections, whose conv keeps its
            bias before the GroupNorm).

    Forward: tuple of (N, in_channels[i], H_i, W_i) -> tuple of ``num_outs``
    (N, out_channels, H_j, W_j). Parameters: ``convs.{i}`` and ``extra_convs.{j}`` (the
    conv, or ``.0`` conv, ``.1`` norm with a norm).
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, norm_cfg=None,
                 act_cfg=RELU, num_outs=None, bias="auto"):  # fmt: skip
        super().__init__()
        self.in_channels = list(in_channels)
        if not self.in_channels:
            raise ValueError("ChannelMapper: in_channels must list at least one level")
        self.out_channels = out_channels
        self.num_outs = len(self.in_channels) if num_outs is None else num_outs
        if self.num_outs < len(self.in_channels):
            raise ValueError(
                f"ChannelMapper: num_outs={self.num_outs} is fewer than the "
                f"{len(self.in_channels)} input levels (in_channels={self.in_channels})"
            )
        self.convs = nn.ModuleList(
            _conv_norm_act(c, out_channels, kernel_size, 1, norm_cfg, act_cfg, bias)
            for c in self.in_channels
        )
        self.extra_convs = nn.ModuleList(
            _conv_norm_act(self.in_channels[-1] if i == 0 else out_channels, out_channels, 3, 2,
                           norm_cfg, act_cfg, bias)
            for i in range(self.num_outs - len(self.in_channels))
        )  # fmt: skip
        self.init_weights()

    def init_weights(self):
        """Xavier-uniform convs with zero biases (mmdetection's), unit norms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs):
        if len(inputs) != len(self.convs):
            raise ValueError(
                f"ChannelMapper: expected {len(self.convs)} input levels, got {len(inputs)}"
            )
        outs = [conv(x) for conv, x in zip(self.convs, inputs)]
        for i, conv in enumerate(self.extra_convs):
            outs.append(conv(inputs[-1] if i == 0 else outs[-1]))
        return tuple(outs)
