"""ResNet backbone with torchvision's module layout (``conv1, bn1, layer1..layer4``).

Input (N, 3, H, W); output a tuple of the stages in ``out_indices``, stage i of shape
(N, base_channels * 2**i * expansion, H / 2**(i + 2), W / 2**(i + 2)) with the default strides
(``base_channels`` 64).
"""

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_like.models.layers import build_norm_layer, conv_norm
from mmdet_like.models.utils import load_pretrained
from mmdet_like.registry import BACKBONES

STYLES = ("pytorch", "caffe")


def conv3x3(in_channels, out_channels, stride=1, dilation=1, groups=1):
    return nn.Conv2d(
        in_channels,
        out_channels,
        3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        groups=groups,
        bias=False,
    )


def shortcut(downsample, x, fold_norm=True):
    """The block's shortcut: ``x`` itself, or ``downsample`` (a conv and a norm) applied."""
    if downsample is None:
        return x
    conv, norm = downsample
    return conv_norm(conv, norm, x, fold_norm)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut: (N, inplanes, H, W) -> (N, planes, H / stride, W / stride)."""

    expansion = 1

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        dilation=1,
        downsample=None,
        style="pytorch",
        norm_cfg=None,
        groups=1,
        base_width=64,
        fold_norm=True,
    ):
        super().__init__()
        self.fold_norm = fold_norm
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        norm_cfg = norm_cfg or dict(type="BN")
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = build_norm_layer(norm_cfg, planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = build_norm_layer(norm_cfg, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_norm(self):
        return self.bn2

    def forward(self, x):
        identity = shortcut(self.downsample, x, self.fold_norm)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, self.fold_norm))
        out = conv_norm(self.conv2, self.bn2, out, self.fold_norm)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, and a shortcut.

    (N, inplanes, H, W) -> (N, planes * 4, H / stride, W / stride). ``style="pytorch"`` puts
    the stride on the 3x3 conv, ``"caffe"`` on the first 1x1 conv. The 3x3 conv has
    ``groups * floor(planes * base_width / 64)`` channels.
    """

    expansion = 4

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        dilation=1,
        downsample=None,
        style="pytorch",
        norm_cfg=None,
        groups=1,
        base_width=64,
        fold_norm=True,
    ):
        super().__init__()
        self.fold_norm = fold_norm
        norm_cfg = norm_cfg or dict(type="BN")
        width = int(planes * (base_width / 64.0)) * groups
        stride_1x1, stride_3x3 = (1, stride) if style == "pytorch" else (stride, 1)
        self.conv1 = nn.Conv2d(inplanes, width, 1, stride=stride_1x1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, width)
        self.conv2 = conv3x3(width, width, stride_3x3, dilation, groups)
        self.bn2 = build_norm_layer(norm_cfg, width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = build_norm_layer(norm_cfg, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_norm(self):
        return self.bn3

    def forward(self, x):
        identity = shortcut(self.downsample, x, self.fold_norm)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, self.fold_norm))
        out = self.relu(conv_norm(self.conv2, self.bn2, out, self.fold_norm))
        out = conv_norm(self.conv3, self.bn3, out, self.fold_norm)
        out += identity
        return self.relu(out)


@BACKBONES.register()
class ResNet(nn.Module):
    """ResNet-18/34/50/101/152.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: image channels.
        num_stages: residual stages used, 1 to 4.
        strides, dilations: per stage.
        out_indices: stages returned by ``forward`` (0-based).
        style: ``"pytorch"`` (stride on the 3x3 conv) or ``"caffe"`` (on the 1x1 conv).
        frozen_stages: stem and stages ``1..frozen_stages`` are frozen (-1: none, 0: stem).
        norm_cfg: normalisation, e.g. ``dict(type="BN", requires_grad=True)``.
        norm_eval: keep batch norms in eval mode (frozen statistics) while training.
        zero_init_residual: zero the last norm of every block (each block starts as identity).
        base_channels: channels of the stem and of the first stage's blocks (64 in the
            standard networks, whose pretrained weights need it); stage ``i`` has
            ``base_channels * 2**i``. Smaller values make a narrower, faster network.
        fold_norm: run a norm with fixed statistics (``norm_eval``, frozen stages, inference,
            ``FrozenBN``) folded into its convolution (:func:`conv_norm`): the same function
            with two fewer passes over every feature map; rounding differs (about 1e-6
            relative per layer). ``False``: the norm runs after the convolution.
        pretrained: ``"torchvision://resnet50"`` or a checkpoint path, loaded by
            :meth:`init_weights`.
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(
        self,
        depth,
        in_channels=3,
        num_stages=4,
        strides=(1, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        out_indices=(0, 1, 2, 3),
        style="pytorch",
        frozen_stages=-1,
        norm_cfg=None,
        norm_eval=True,
        zero_init_residual=True,
        pretrained=None,
        groups=1,
        base_width=64,
        fold_norm=True,
        base_channels=64,
    ):
        super().__init__()
        if base_channels < 1:
            raise ValueError(f"ResNet: base_channels must be positive, got {base_channels}")
        if depth not in self.arch_settings:
            raise ValueError(
                f"ResNet: depth must be one of {sorted(self.arch_settings)}, got {depth}"
            )
        if style not in STYLES:
            raise ValueError(f"ResNet: style must be one of {STYLES}, got {style!r}")
        if not 1 <= num_stages <= 4:
            raise ValueError(f"ResNet: num_stages must be in 1..4, got {num_stages}")
        if len(strides) < num_stages or len(dilations) < num_stages:
            raise ValueError("ResNet: strides and dilations need one entry per stage")
        if not out_indices or max(out_indices) >= num_stages or min(out_indices) < 0:
            raise ValueError(f"ResNet: out_indices {out_indices} must lie in 0..{num_stages - 1}")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"ResNet: frozen_stages must be in -1..{num_stages}")
        self.depth = depth
        self.style = style
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_cfg = dict(norm_cfg or dict(type="BN", requires_grad=True))
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual
        self.pretrained = pretrained
        self.groups = groups
        self.base_width = base_width
        self.fold_norm = fold_norm
        block, stage_blocks = self.arch_settings[depth]

        self.conv1 = nn.Conv2d(in_channels, base_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = build_norm_layer(self.norm_cfg, base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.inplanes = base_channels
        self.stage_names = []
        self.out_channels = []
        for i in range(num_stages):
            planes = base_channels * 2**i
            layer = self._make_layer(block, planes, stage_blocks[i], strides[i], dilations[i])
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.stage_names.append(name)
            self.out_channels.append(planes * block.expansion)
        self.out_channels = [self.out_channels[i] for i in self.out_indices]

        self.init_weights(load=False)
        self._freeze_stages()

    def _make_layer(self, block, planes, num_blocks, stride, dilation):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                build_norm_layer(self.norm_cfg, planes * block.expansion),
            )
        common = dict(
            style=self.style,
            norm_cfg=self.norm_cfg,
            groups=self.groups,
            base_width=self.base_width,
            dilation=dilation,
            fold_norm=self.fold_norm,
        )
        blocks = [block(self.inplanes, planes, stride, downsample=downsample, **common)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, **common) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def init_weights(self, load=True):
        """Kaiming-normal convs, unit norms (zeroed last norms with ``zero_init_residual``),
        then the ``pretrained`` weights when ``load`` and one is set."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    if getattr(m.last_norm, "weight", None) is not None:
                        m.last_norm.weight.data.zero_()
        if load and self.pretrained:
            load_pretrained(self, self.pretrained)

    def _freeze_stages(self):
        frozen = []
        if self.frozen_stages >= 0:
            frozen += [self.conv1, self.bn1]
        frozen += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode=True):
        """Switch mode, keeping frozen stages (and all norms with ``norm_eval``) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x):
        """(N, C, H, W) -> tuple of the ``out_indices`` stage features."""
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x, self.fold_norm)))
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
