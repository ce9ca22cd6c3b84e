"""Transformer layers of the DETR family: attention and feed-forward sublayers, DETR's
encoder and decoder, Deformable DETR's multi-scale deformable attention, encoder and
decoder, DINO's and RT-DETR's decoders and denoising queries."""

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
from mmdet_like.models.layers.transformer.rtdetr_layers import (
    RTDETRCdnQueryGenerator,
    RTDETRTransformerDecoder,
    sincos_position_embedding,
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
    "RTDETRCdnQueryGenerator",
    "RTDETRTransformerDecoder",
    "sincos_position_embedding",
]
