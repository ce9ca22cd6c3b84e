"""Necks (registered in ``NECKS``)."""

from mmdet_like.models.necks.channel_mapper import ChannelMapper
from mmdet_like.models.necks.fpn import FPN

__all__ = ["FPN", "ChannelMapper"]
