"""Transformer layers of the DETR family: attention and feed-forward sublayers, DETR's
encoder and decoder, Deformable DETR's multi-scale deformable attention, encoder and
decoder."""

from mmdet_like.models.layers.transformer.attention import FFN, MultiheadAttention
from mmdet_like.models.layers.transformer.deformable_layers import (
    DeformableDetrTransformerDecoder,
    DeformableDetrTransformerDecoderLayer,
    DeformableDetrTransformerEncoder,
    DeformableDetrTransformerEncoderLayer,
    MultiScaleDeformableAttention,
    inverse_sigmoid,
)
from mmdet_like.models.layers.transformer.detr_layers import (
    DetrTransformerDecoder,
    DetrTransformerDecoderLayer,
    DetrTransformerEncoder,
    DetrTransformerEncoderLayer,
)

__all__ = [
    "FFN",
    "DeformableDetrTransformerDecoder",
    "DeformableDetrTransformerDecoderLayer",
    "DeformableDetrTransformerEncoder",
    "DeformableDetrTransformerEncoderLayer",
    "MultiScaleDeformableAttention",
    "inverse_sigmoid",
    "DetrTransformerDecoder",
    "DetrTransformerDecoderLayer",
    "DetrTransformerEncoder",
    "DetrTransformerEncoderLayer",
    "MultiheadAttention",
]
