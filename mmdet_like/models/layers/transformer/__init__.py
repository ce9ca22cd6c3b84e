"""Transformer layers of the DETR family: attention and feed-forward sublayers, DETR's
encoder and decoder."""

from mmdet_like.models.layers.transformer.attention import FFN, MultiheadAttention
from mmdet_like.models.layers.transformer.detr_layers import (
    DetrTransformerDecoder,
    DetrTransformerDecoderLayer,
    DetrTransformerEncoder,
    DetrTransformerEncoderLayer,
)

__all__ = [
    "FFN",
    "DetrTransformerDecoder",
    "DetrTransformerDecoderLayer",
    "DetrTransformerEncoder",
    "DetrTransformerEncoderLayer",
    "MultiheadAttention",
]
