"""ResNeXt backbone: ResNet bottlenecks with a grouped 3x3 conv (e.g. 32x4d, 64x4d, 32x8d).

Same layout, inputs and outputs as :class:`ResNet`, so torchvision's ``resnext*`` weights
load directly.
"""

from mmdet_like.models.backbones.resnet import Bottleneck, ResNet
from mmdet_like.registry import BACKBONES


@BACKBONES.register()
class ResNeXt(ResNet):
    """ResNeXt-50/101/152 with ``groups`` cardinality and ``base_width`` channels per group.

    ``ResNeXt(depth=101, groups=32, base_width=8)`` is ResNeXt-101 32x8d; the 3x3 conv of a
    stage with ``planes`` has ``groups * floor(planes * base_width / 64)`` channels. Other
    arguments as :class:`ResNet`.
    """

    arch_settings = {
        depth: setting
        for depth, setting in ResNet.arch_settings.items()
        if setting[0] is Bottleneck
    }

    def __init__(self, depth, groups=32, base_width=4, **kwargs):
        super().__init__(depth, groups=groups, base_width=base_width, **kwargs)
