"""DETR's transformer (Carion et al. 2020): post-norm encoder and decoder layers and their
stacks, the decoder returning every layer's normalised output for the auxiliary losses.

Built from plain dicts as mmdetection 3's ``DetrTransformerEncoder`` /
``DetrTransformerDecoder`` (``num_layers``, ``layer_cfg=dict(self_attn_cfg=...,
[cross_attn_cfg=...,] ffn_cfg=...)``), with its parameter names (``layers.{i}.self_attn.attn``,
``cross_attn.attn``, ``ffn.layers``, ``norms.{k}``, ``post_norm``). Deformable DETR's and
DINO's layers subclass these and replace the attention modules.

Sequences are batch-first: (B, L, C).
"""

import copy

import torch
from torch import nn

from mmdet_like.models.layers.transformer.attention import (
    ACTIVATIONS,
    FFN,
    MultiheadAttention,
)

_ATTN_KEYS = {"embed_dims", "num_heads", "attn_drop", "proj_drop", "dropout", "batch_first"}
_FFN_KEYS = {"embed_dims", "feedforward_channels", "num_fcs", "ffn_drop", "dropout", "act_cfg",
             "add_residual"}  # fmt: skip


def _checked(cfg, known, where):
    """A copy of the sublayer config ``cfg`` without mmcv's fixed settings, after checking
    its keys and values (``batch_first`` must be True, ``num_fcs`` 2, ``act_cfg`` ReLU, GELU
    or SiLU: kept for the FFN)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; it takes {sorted(known)}")
    if not cfg.pop("batch_first", True):
        raise ValueError(f"{where}.batch_first=False: these layers are batch-first only")
    if cfg.pop("num_fcs", 2) != 2:
        raise ValueError(f"{where}.num_fcs: only 2 (DETR's feed-forward network) is supported")
    act = cfg.get("act_cfg")
    if act is not None and dict(act).get("type") not in ACTIVATIONS:
        raise ValueError(f"{where}.act_cfg={act!r}: the type must be one of {sorted(ACTIVATIONS)}")
    return cfg


def build_attention(cfg, where):
    return MultiheadAttention(**_checked(cfg, _ATTN_KEYS, where))


def build_ffn(cfg, where):
    return FFN(**_checked(cfg, _FFN_KEYS, where))


class DetrTransformerEncoderLayer(nn.Module):
    """Self-attention and feed-forward network, each followed by a LayerNorm (post-norm).

    Args:
        self_attn_cfg: :class:`MultiheadAttention` arguments (``embed_dims``, ``num_heads``,
            ``dropout``, ...).
        ffn_cfg: :class:`FFN` arguments (``embed_dims``, ``feedforward_channels``,
            ``ffn_drop``, ...).
    """

    def __init__(self, self_attn_cfg, ffn_cfg):
        super().__init__()
        self.self_attn_cfg = dict(self_attn_cfg)
        self.ffn_cfg = dict(ffn_cfg)
        self._init_layers()

    def _init_layers(self):
        self.self_attn = build_attention(self.self_attn_cfg, "encoder.layer_cfg.self_attn_cfg")
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = build_ffn(self.ffn_cfg, "encoder.layer_cfg.ffn_cfg")
        self.norms = nn.ModuleList(nn.LayerNorm(self.embed_dims) for _ in range(2))

    def forward(self, query, query_pos, key_padding_mask):
        """(B, L, C) features, (B, L, C) positions, (B, L) padding mask -> (B, L, C)."""
        query = self.self_attn(
            query, query_pos=query_pos, key_pos=query_pos, key_padding_mask=key_padding_mask
        )
        query = self.norms[0](query)
        return self.norms[1](self.ffn(query))


class DetrTransformerDecoderLayer(nn.Module):
    """Self-attention among the queries, cross-attention to the encoder's memory and a
    feed-forward network, each followed by a LayerNorm (post-norm).

    Args:
        self_attn_cfg, cross_attn_cfg: :class:`MultiheadAttention` arguments.
        ffn_cfg: :class:`FFN` arguments.
    """

    def __init__(self, self_attn_cfg, cross_attn_cfg, ffn_cfg):
        super().__init__()
        self.self_attn_cfg = dict(self_attn_cfg)
        self.cross_attn_cfg = dict(cross_attn_cfg)
        self.ffn_cfg = dict(ffn_cfg)
        self._init_layers()

    def _init_layers(self):
        self.self_attn = build_attention(self.self_attn_cfg, "decoder.layer_cfg.self_attn_cfg")
        self.cross_attn = build_attention(self.cross_attn_cfg, "decoder.layer_cfg.cross_attn_cfg")
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = build_ffn(self.ffn_cfg, "decoder.layer_cfg.ffn_cfg")
        self.norms = nn.ModuleList(nn.LayerNorm(self.embed_dims) for _ in range(3))

    def forward(self, query, key, value, query_pos=None, key_pos=None, key_padding_mask=None,
                self_attn_mask=None):  # fmt: skip
        """(B, Q, C) queries with (B, Q, C) positions; (B, L, C) memory as key and value
        with (B, L, C) positions and (B, L) padding mask -> (B, Q, C)."""
        query = self.self_attn(
            query, query_pos=query_pos, key_pos=query_pos, attn_mask=self_attn_mask
        )
        query = self.norms[0](query)
        query = self.cross_attn(
            query, key, value, query_pos=query_pos, key_pos=key_pos,
            key_padding_mask=key_padding_mask,
        )  # fmt: skip
        query = self.norms[1](query)
        return self.norms[2](self.ffn(query))


class DetrTransformerEncoder(nn.Module):
    """``num_layers`` encoder layers built from ``layer_cfg`` (no final norm: the layers are
    post-norm)."""

    layer_type = DetrTransformerEncoderLayer

    def __init__(self, num_layers, layer_cfg):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"encoder.num_layers must be at least 1, got {num_layers}")
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self._init_layers()

    def _init_layers(self):
        self.layers = nn.ModuleList(
            self.layer_type(**copy.deepcopy(self.layer_cfg)) for _ in range(self.num_layers)
        )
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query, query_pos, key_padding_mask, **kwargs):
        """(B, L, C) features, (B, L, C) positions, (B, L) padding mask -> (B, L, C)."""
        for layer in self.layers:
            query = layer(query, query_pos, key_padding_mask, **kwargs)
        return query


class DetrTransformerDecoder(nn.Module):
    """``num_layers`` decoder layers and a LayerNorm (``post_norm``) applied to each layer's
    output that the heads read.

    Args:
        num_layers: decoder layers.
        layer_cfg: :class:`DetrTransformerDecoderLayer` arguments.
        return_intermediate: return every layer's normalised output (the auxiliary losses),
            else only the last one's.
        norm_layer_inputs: each layer after the first takes the previous layer's output
            after ``post_norm`` and the last output is normalised twice, as transformers'
            ``DetrDecoder`` computes with ``auxiliary_loss=True`` (DETR and mmdetection pass
            the unnormalised output on); for models fine-tuned there so.
    """

    layer_type = DetrTransformerDecoderLayer

    def __init__(self, num_layers, layer_cfg, return_intermediate=True, norm_layer_inputs=False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"decoder.num_layers must be at least 1, got {num_layers}")
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.return_intermediate = return_intermediate
        self.norm_layer_inputs = norm_layer_inputs
        self._init_layers()

    def _init_layers(self):
        self.layers = nn.ModuleList(
            self.layer_type(**copy.deepcopy(self.layer_cfg)) for _ in range(self.num_layers)
        )
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = nn.LayerNorm(self.embed_dims)

    def forward(self, query, key, value, query_pos, key_pos, key_padding_mask, **kwargs):
        """(B, Q, C) queries and positions, (B, L, C) memory (key, value) with its positions
        and (B, L) padding mask -> (num_layers, B, Q, C) normalised outputs of every layer
        (``return_intermediate``) or (1, B, Q, C) of the last; the layers pass their
        outputs on unnormalised."""
        outputs = []
        for layer in self.layers:
            query = layer(query, key, value, query_pos=query_pos, key_pos=key_pos,
                          key_padding_mask=key_padding_mask, **kwargs)  # fmt: skip
            if self.return_intermediate or self.norm_layer_inputs:
                normed = self.post_norm(query)
                if self.return_intermediate:
                    outputs.append(normed)
                if self.norm_layer_inputs:
                    query = normed
        if not self.return_intermediate:
            outputs.append(self.post_norm(query))
        elif self.norm_layer_inputs:
            outputs[-1] = self.post_norm(outputs[-1])
        return torch.stack(outputs)
