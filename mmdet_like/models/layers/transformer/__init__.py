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
from mmdet_like.models.layers.transformer.dino_layers import (
    CdnQueryGenerator,
    DinoTransformerDecoder,
    coordinate_to_encoding,
)

__all__ = [
    "FFN",
    "CdnQueryGenerator",
    "DinoTransformerDecoder",
    "coordinate_to_encoding",
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
