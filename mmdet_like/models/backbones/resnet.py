"""ResNet backbone with torchvision's module layout (``conv1, bn1, layer1..layer4``), and
the ResNet-vd form (He et al. 2019, "Bag of Tricks": ``deep_stem`` and ``avg_down``;
mmdetection's ``ResNetV1d`` names ``stem.{0..8}``, ``layer{i}.0.downsample.{0,1,2}``) that
RT-DETR's PResNet backbones are.

Input (N, 3, H, W); output a tuple of the stages in ``out_indices``, stage i of shape
(N, base_channels * 2**i * expansion, H / 2**(i + 2), W / 2**(i + 2)) with the default strides
(``base_channels`` 64).
"""

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_like.models.backbones.base_backbone import BaseBackbone, Block
from mmdet_like.models.layers import build_norm_layer, conv_norm
from mmdet_like.models.plugins import add_block_plugins, build_plugin_layers
from mmdet_like.models.utils import load_pretrained
from mmdet_like.registry import BACKBONES, PLUGIN_LAYERS

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
    """The block's shortcut: ``x`` itself, or ``downsample`` applied: a conv and a norm, or
    (``avg_down``) an average pooling, a conv and a norm."""
    if downsample is None:
        return x
    *pool, conv, norm = downsample
    if pool:
        x = pool[0](x)
    return conv_norm(conv, norm, x, fold_norm)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut: (N, inplanes, H, W) -> (N, planes, H / stride, W / stride).

    ``plugins``: ``dict(cfg=dict(type=...), position=...)`` entries; ``"after_conv1"`` runs
    after conv1's norm and ReLU, ``"after_conv2"`` after conv2's norm (before the residual
    add); both see ``planes`` channels.
    """

    expansion = 1
    plugin_positions = ("after_conv1", "after_conv2")

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
        plugins=None,
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
        add_block_plugins(self, plugins, {"after_conv1": planes, "after_conv2": planes})

    @property
    def last_norm(self):
        return self.bn2

    def forward(self, x):
        identity = shortcut(self.downsample, x, self.fold_norm)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, self.fold_norm))
        if self.after_conv1_plugins is not None:
            out = self.after_conv1_plugins(out)
        out = conv_norm(self.conv2, self.bn2, out, self.fold_norm)
        if self.after_conv2_plugins is not None:  # not in place: a plugin's output
            out = self.after_conv2_plugins(out) + identity
        else:
            out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, and a shortcut.

    (N, inplanes, H, W) -> (N, planes * 4, H / stride, W / stride). ``style="pytorch"`` puts
    the stride on the 3x3 conv, ``"caffe"`` on the first 1x1 conv. The 3x3 conv has
    ``groups * floor(planes * base_width / 64)`` channels.

    ``plugins``: ``dict(cfg=dict(type=...), position=...)`` entries; ``"after_conv1"`` and
    ``"after_conv2"`` run after that conv's norm and ReLU (the 3x3 conv's width of
    channels), ``"after_conv3"`` after conv3's norm, before the residual add
    (``planes * 4`` channels).
    """

    expansion = 4
    plugin_positions = ("after_conv1", "after_conv2", "after_conv3")

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
        plugins=None,
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
        channels = {"after_conv1": width, "after_conv2": width, "after_conv3": planes * 4}
        add_block_plugins(self, plugins, channels)

    @property
    def last_norm(self):
        return self.bn3

    def forward(self, x):
        identity = shortcut(self.downsample, x, self.fold_norm)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, self.fold_norm))
        if self.after_conv1_plugins is not None:
            out = self.after_conv1_plugins(out)
        out = self.relu(conv_norm(self.conv2, self.bn2, out, self.fold_norm))
        if self.after_conv2_plugins is not None:
            out = self.after_conv2_plugins(out)
        out = conv_norm(self.conv3, self.bn3, out, self.fold_norm)
        if self.after_conv3_plugins is not None:  # not in place: a plugin's output
            out = self.after_conv3_plugins(out) + identity
        else:
            out += identity
        return self.relu(out)


def make_res_layer(
    block, inplanes, planes, num_blocks, stride=1, dilation=1, norm_cfg=None, avg_down=False,
    conv_shortcut=False, **block_args
):  # fmt: skip
    """One ResNet stage (``layer1``..``layer4``): ``num_blocks`` blocks, the first with
    ``stride`` and, when the stride or the channels change (or ``conv_shortcut``), a 1x1
    conv + norm shortcut (``downsample``). (N, inplanes, H, W) -> (N, planes * expansion,
    H / stride, W / stride).

    ``avg_down``: the shortcut averages ``stride`` x ``stride`` cells (``ceil_mode``) before
    a stride-1 conv, instead of the conv's stride (ResNet-vd; ``downsample.0`` the pooling,
    also for stride 1, where it is the identity, as mmdetection's). ``conv_shortcut``: the
    first block has the conv shortcut even where the stride and the width are unchanged
    (RT-DETR's PResNet-18/34 first stage). ``block_args``: the blocks' other arguments
    (``style``, ``groups``, ``base_width``, ``fold_norm``). Used by :class:`ResNet` and by
    the ``ResLayer`` shared head.
    """
    norm_cfg = norm_cfg or dict(type="BN")
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels or conv_shortcut:
        parts = []
        conv_stride = stride
        if avg_down:
            conv_stride = 1
            parts.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
        parts += [nn.Conv2d(inplanes, out_channels, 1, stride=conv_stride, bias=False),
                  build_norm_layer(norm_cfg, out_channels)]  # fmt: skip
        downsample = nn.Sequential(*parts)
    common = dict(block_args, norm_cfg=norm_cfg, dilation=dilation)
    blocks = [block(inplanes, planes, stride, downsample=downsample, **common)]
    blocks += [block(out_channels, planes, **common) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


def init_resnet_weights(module, zero_init_residual=True):
    """Kaiming-normal convs and unit norms in ``module`` (a ResNet or some of its stages);
    with ``zero_init_residual`` every block's last norm is zeroed (the block starts as its
    shortcut)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in module.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                if getattr(m.last_norm, "weight", None) is not None:
                    m.last_norm.weight.data.zero_()


@BACKBONES.register()
class ResNet(BaseBackbone):
    """ResNet-18/34/50/101/152 (a :class:`BaseBackbone`: stem ``conv1, bn1`` (``stem`` with
    ``deep_stem``), stage ``i`` the blocks of ``layer{i}``; outputs at strides ``4 *
    strides[0] * ... * strides[i]``).

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
        plugins: modules inserted into the network (``PLUGIN_LAYERS``), a list of
            ``dict(cfg=dict(type="NonLocal2d", ...), position=..., stages=(False, True,
            True, False))``; each is built with ``in_channels`` set to the channels at its
            position. ``position``: ``"after_conv1"``, ``"after_conv2"``, ``"after_conv3"``
            (in every block of the selected stages, after that conv's norm and ReLU; after
            the last conv's norm, before the residual add; ``after_conv3`` needs
            Bottleneck blocks), ``"after_stage"`` (after the stage's last block) or
            ``"after_backbone"`` (one module taking and returning the tuple of the
            ``out_indices`` outputs, built with ``in_channels`` their channel list; no
            ``stages``). ``stages``: one bool per stage, default all. Entries at the same
            place run in list order. Plugins are named apart from the torchvision names
            (``layer2.0.after_conv2_plugins.0.*``, ``layer3_after_stage_plugins.0.*``,
            ``after_backbone_plugins.0.*``), are newly initialised when ``pretrained``
            weights load, and are frozen with their stage by ``frozen_stages``.
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
        plugins=None,
        deep_stem=False,
        avg_down=False,
        stem_channels=None,
        conv_shortcut_first_block=False,
    ):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval)
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
        self.depth = depth
        self.style = style
        self.out_indices = tuple(out_indices)
        self.norm_cfg = dict(norm_cfg or dict(type="BN", requires_grad=True))
        self.zero_init_residual = zero_init_residual
        self.pretrained = pretrained
        self.groups = groups
        self.base_width = base_width
        self.fold_norm = fold_norm
        self.deep_stem = bool(deep_stem)
        self.avg_down = bool(avg_down)
        self.conv_shortcut_first_block = bool(conv_shortcut_first_block)
        stem_channels = base_channels if stem_channels is None else int(stem_channels)
        if self.deep_stem and stem_channels % 2:
            raise ValueError(f"ResNet: deep_stem needs even stem_channels, got {stem_channels}")
        block, stage_blocks = self.arch_settings[depth]
        block_plugins, after_stage, after_backbone = self._sort_plugins(plugins, num_stages, block)

        if self.deep_stem:
            half = stem_channels // 2
            stem = []
            for c_in, c_out, stride in ((in_channels, half, 2), (half, half, 1),
                                        (half, stem_channels, 1)):  # fmt: skip
                stem += [conv3x3(c_in, c_out, stride), build_norm_layer(self.norm_cfg, c_out),
                         nn.ReLU(inplace=True)]  # fmt: skip
            self.stem = nn.Sequential(*stem)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.bn1 = build_norm_layer(self.norm_cfg, stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.inplanes = stem_channels
        self.stage_names = []
        stage_channels, stage_strides, stride = [], [], 4  # conv1 and the max-pool: 4
        for i in range(num_stages):
            planes = base_channels * 2**i
            layer = self._make_layer(
                block, planes, stage_blocks[i], strides[i], dilations[i], block_plugins[i]
            )
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.stage_names.append(name)
            stage_channels.append(planes * block.expansion)
            stride *= strides[i]
            stage_strides.append(stride)
            plugin_layers = build_plugin_layers(after_stage[i], planes * block.expansion)
            setattr(self, f"{name}_after_stage_plugins", plugin_layers)
        self.out_channels = [stage_channels[i] for i in self.out_indices]
        self.out_strides = [stage_strides[i] for i in self.out_indices]
        self.after_backbone_plugins = build_plugin_layers(after_backbone, self.out_channels)
        for module in self.after_backbone_plugins or ():
            kept = getattr(module, "out_channels", self.out_channels)
            if not isinstance(kept, (list, tuple)) or list(kept) != self.out_channels:
                raise ValueError(
                    f"{type(self).__name__}: the after_backbone plugin {type(module).__name__} "
                    f"gives {module.out_channels} channels, the backbone's outputs have "
                    f"{self.out_channels}; an after_backbone plugin must keep the shapes (leave "
                    "its out_channels unset)"
                )

        self.init_weights(load=False)
        self.freeze_stages()

    def blocks(self):
        """The stem (``conv1``, ``bn1``, or ``stem``), then every block of ``layer1..``; a
        stage's ``after_stage`` plugins belong to its last block."""
        blocks = [Block(0, ("stem",) if self.deep_stem else ("conv1", "bn1"))]
        for stage, name in enumerate(self.stage_names, start=1):
            names = [(f"{name}.{j}",) for j in range(len(getattr(self, name)))]
            if getattr(self, f"{name}_after_stage_plugins") is not None:
                names[-1] += (f"{name}_after_stage_plugins",)
            blocks += [Block(stage, block_names) for block_names in names]
        return blocks

    def _sort_plugins(self, plugins, num_stages, block):
        """Check the ``plugins`` config and sort it by place: per stage, the entries for its
        blocks (``dict(cfg=..., position=...)``) and the configs after it; then the configs
        after the backbone."""
        owner = type(self).__name__
        positions = (*block.plugin_positions, "after_stage", "after_backbone")
        block_plugins = [[] for _ in range(num_stages)]
        after_stage = [[] for _ in range(num_stages)]
        after_backbone = []
        if plugins is None:
            plugins = ()
        if not isinstance(plugins, (list, tuple)):
            raise ValueError(
                f"{owner}: plugins must be a list of dict(cfg=dict(type=...), position=..., "
                f"stages=...), got {plugins!r}"
            )
        for k, plugin in enumerate(plugins):
            where = f"{owner}: plugins[{k}]"
            if not isinstance(plugin, dict) or "cfg" not in plugin or "position" not in plugin:
                raise ValueError(
                    f"{where} must be dict(cfg=dict(type=...), position=..., stages=...), "
                    f"got {plugin!r}"
                )
            unknown = sorted(set(plugin) - {"cfg", "position", "stages"})
            if unknown:
                raise ValueError(
                    f"{where}: unknown key(s) {unknown}; it takes cfg, position, stages"
                )
            cfg, position, stages = plugin["cfg"], plugin["position"], plugin.get("stages")
            if not isinstance(cfg, dict) or "type" not in cfg:
                raise ValueError(
                    f"{where}.cfg must be a dict with a type (one of {PLUGIN_LAYERS.names}), "
                    f"got {cfg!r}"
                )
            if "in_channels" in cfg:
                raise ValueError(
                    f"{where}.cfg sets in_channels; remove it: {owner} builds the plugin with "
                    "the channels at its position"
                )
            if position not in positions:
                hint = ""
                if position == "after_conv3":
                    hint = (
                        f"; {block.__name__} (ResNet-{self.depth}) has two convs: use "
                        "after_conv2, its last conv before the residual add"
                    )
                raise ValueError(f"{where}: position {position!r} is not one of {positions}{hint}")
            if position == "after_backbone":
                if stages is not None:
                    raise ValueError(
                        f"{where}: remove stages; an after_backbone plugin takes all the "
                        "out_indices outputs at once"
                    )
                after_backbone.append(cfg)
                continue
            if stages is None:
                stages = (True,) * num_stages
            if (
                not isinstance(stages, (list, tuple))
                or len(stages) != num_stages
                or not all(isinstance(selected, bool) for selected in stages)
            ):
                raise ValueError(
                    f"{where}: stages must be {num_stages} booleans, one per stage "
                    f"(num_stages={num_stages}), got {stages!r}"
                )
            for i in (i for i, selected in enumerate(stages) if selected):
                if position == "after_stage":
                    after_stage[i].append(cfg)
                else:
                    block_plugins[i].append(dict(cfg=cfg, position=position))
        return block_plugins, after_stage, after_backbone

    def _make_layer(self, block, planes, num_blocks, stride, dilation, plugins=None):
        layer = make_res_layer(
            block, self.inplanes, planes, num_blocks, stride, dilation, norm_cfg=self.norm_cfg,
            style=self.style, groups=self.groups, base_width=self.base_width,
            fold_norm=self.fold_norm, plugins=plugins, avg_down=self.avg_down,
            conv_shortcut=self.conv_shortcut_first_block,
        )  # fmt: skip
        self.inplanes = planes * block.expansion
        return layer

    def init_weights(self, load=True):
        """Kaiming-normal convs, unit norms (zeroed last norms with ``zero_init_residual``),
        then the ``pretrained`` weights when ``load`` and one is set."""
        init_resnet_weights(self, self.zero_init_residual)
        plugin_layers = self.plugin_layers()
        for plugins in plugin_layers.values():  # their own initialisation, when they have one
            for plugin in plugins:
                if hasattr(plugin, "init_weights"):
                    plugin.init_weights()
        if load and self.pretrained:
            # not ours: the classifier and the stages past num_stages (a C4 model's layer4
            # is its ResLayer shared head's, loaded there)
            unused = ("fc.",) + tuple(f"layer{i}." for i in range(len(self.stage_names) + 1, 5))
            load_pretrained(
                self,
                self.pretrained,
                ignore_prefixes=unused,
                new_prefixes=[f"{name}." for name in plugin_layers],
            )

    def plugin_layers(self):
        """``{module name: nn.Sequential}`` of every plugin insertion point in use."""
        return {
            name: module
            for name, module in self.named_modules()
            if name.rpartition(".")[2].endswith("_plugins")
        }

    def forward(self, x):
        """(N, C, H, W) -> tuple of the ``out_indices`` stage features."""
        if self.deep_stem:
            for i in range(0, len(self.stem), 3):
                x = self.relu(conv_norm(self.stem[i], self.stem[i + 1], x, self.fold_norm))
            x = self.maxpool(x)
        else:
            x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x, self.fold_norm)))
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            after_stage = getattr(self, f"{name}_after_stage_plugins")
            if after_stage is not None:
                x = after_stage(x)
            if i in self.out_indices:
                outs.append(x)
        if self.after_backbone_plugins is not None:
            return tuple(self.after_backbone_plugins(tuple(outs)))
        return tuple(outs)
