"""Backbone plugins (registered in ``PLUGIN_LAYERS``): modules a backbone inserts at
configured points, e.g. ``ResNet(plugins=[dict(cfg=dict(type="NonLocal2d"),
position="after_conv2", stages=(False, True, True, False))])``. See docs/models.md."""

from mmdet_like.models.plugins.builder import add_block_plugins, build_plugin_layers
from mmdet_like.models.plugins.context_block import ContextBlock
from mmdet_like.models.plugins.non_local import NonLocal2d
from mmdet_like.models.plugins.stage_fusion import StageFusion

__all__ = [
    "ContextBlock",
    "NonLocal2d",
    "StageFusion",
    "add_block_plugins",
    "build_plugin_layers",
]
