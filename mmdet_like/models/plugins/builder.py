"""Building the plugin modules of one insertion point of a backbone."""

from torch import nn

from mmdet_like.registry import PLUGIN_LAYERS, build_from_cfg


def build_plugin_layers(cfgs, in_channels):
    """``[dict(type=...), ...]`` -> ``nn.Sequential`` of the ``PLUGIN_LAYERS`` modules, each
    built with ``in_channels`` (the channels at the insertion point: an int, or a list for a
    module taking every stage output), in config order; ``None`` when ``cfgs`` is empty.

    Every module must return a tensor (or tuple) of the shape it receives.
    """
    if not cfgs:
        return None
    if isinstance(in_channels, (list, tuple)):
        in_channels = list(in_channels)
    return nn.Sequential(
        *(build_from_cfg(cfg, PLUGIN_LAYERS, {"in_channels": in_channels}) for cfg in cfgs)
    )


def add_block_plugins(block, plugins, channels):
    """Give ``block`` one ``<position>_plugins`` attribute per entry of ``channels``
    (``{"after_conv1": C1, ...}``, its insertion points and their channels): the
    ``nn.Sequential`` of the ``plugins`` entries (``dict(cfg=dict(type=...),
    position=...)``) at that point, or ``None``."""
    plugins = list(plugins or ())
    unknown = sorted({p["position"] for p in plugins} - set(channels))
    if unknown:
        raise ValueError(
            f"{type(block).__name__}: plugin position(s) {unknown} are not in this block; "
            f"its positions are {tuple(channels)}"
        )
    for position, in_channels in channels.items():
        cfgs = [p["cfg"] for p in plugins if p["position"] == position]
        setattr(block, f"{position}_plugins", build_plugin_layers(cfgs, in_channels))
