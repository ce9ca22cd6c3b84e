"""Layers chosen by config (normalisation), convolution + normalisation folding, the
learnable per-level ``Scale``, positional encodings and the transformer layers of the DETR
family."""

from mmdet_like.models.layers.conv_norm import conv_norm, fixed_affine
from mmdet_like.models.layers.norm import FrozenBatchNorm2d, GroupNorm, build_norm_layer
from mmdet_like.models.layers.positional_encoding import (
    LearnedPositionalEncoding,
    SinePositionalEncoding,
)
from mmdet_like.models.layers.scale import Scale
from mmdet_like.models.layers.transformer import (
    FFN,
    DetrTransformerDecoder,
    DetrTransformerDecoderLayer,
    DetrTransformerEncoder,
    DetrTransformerEncoderLayer,
    MultiheadAttention,
)

__all__ = [
    "FFN",
    "DetrTransformerDecoder",
    "DetrTransformerDecoderLayer",
    "DetrTransformerEncoder",
    "DetrTransformerEncoderLayer",
    "FrozenBatchNorm2d",
    "GroupNorm",
    "LearnedPositionalEncoding",
    "MultiheadAttention",
    "Scale",
    "SinePositionalEncoding",
    "build_norm_layer",
    "conv_norm",
    "fixed_affine",
]
