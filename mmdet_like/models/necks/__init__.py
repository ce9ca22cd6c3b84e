"""Necks (registered in ``NECKS``)."""

from mmdet_like.models.necks.channel_mapper import ChannelMapper
from mmdet_like.models.necks.fpn import FPN
from mmdet_like.models.necks.hybrid_encoder import CSPRepLayer, HybridEncoder, RepVGGBlock

__all__ = ["FPN", "CSPRepLayer", "ChannelMapper", "HybridEncoder", "RepVGGBlock"]
