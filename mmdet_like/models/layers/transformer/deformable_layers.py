"""Deformable DETR's transformer (Zhu et al. 2021): multi-scale deformable attention, the
post-norm encoder over the flattened levels (each cell attends to a few sampled points
around itself on every level) and the decoder (self-attention among the queries,
deformable cross-attention around each query's reference point), whose reference points
the box branches can refine layer by layer.

Built from plain dicts as mmdetection 3's ``DeformableDetrTransformerEncoder`` /
``DeformableDetrTransformerDecoder``, with its parameter names
(``layers.{i}.self_attn.{sampling_offsets, attention_weights, value_proj, output_proj}``,
``cross_attn.*``, ``ffn.layers``, ``norms.{k}``).

Sequences are batch-first: (B, L, C). Levels are flattened one after the other
(``spatial_shapes`` (num_levels, 2) ``[h, w]``, ``level_start_index`` (num_levels,)), and
``spatial_shapes_list`` is the same shapes as Python ints (for the plain-PyTorch form that
export writes, and for building grids without reading the device).
"""

import copy
import math

import torch
from torch import nn

from mmdet_like.models.layers.transformer.detr_layers import (
    DetrTransformerDecoderLayer,
    DetrTransformerEncoderLayer,
    build_attention,
    build_ffn,
)
from mmdet_like.ops import ms_deform_attn, ms_deform_attn_reference

_DEFORM_KEYS = {"embed_dims", "num_heads", "num_levels", "num_points", "dropout", "batch_first",
                "im2col_step", "value_proj_ratio"}  # fmt: skip


def inverse_sigmoid(x, eps=1e-5):
    """``log(x / (1 - x))`` of ``x`` clamped to [0, 1], both terms at least ``eps``."""
    # float bounds: with int bounds, torch 2.14's ONNX exporter wrote a Clip whose bound
    # constants were missing from the file (two-stage Deformable DETR)
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def _exporting():
    return torch.onnx.is_in_onnx_export() or (
        torch.compiler.is_compiling() and torch.compiler.is_exporting()
    )


class MultiScaleDeformableAttention(nn.Module):
    """``identity + dropout(output_proj(ms_deform_attn(...)))``: each query's heads sample
    ``num_points`` points per level around its reference point (offsets and softmaxed
    weights predicted from ``query + query_pos``) in the projected value.

    Args:
        embed_dims: the width C (divisible by ``num_heads``).
        num_heads, num_levels, num_points: Deformable DETR's 8, 4, 4. ``num_points`` may be
            a list, one count per level (RT-DETRv2's per-level sampling points: each
            query's head softmaxes its weights over all ``sum(num_points)`` points, and a
            box reference's offsets on level ``l`` scale by ``1 / num_points[l]``); the
            compiled op then runs on ``max(num_points)`` points a level, the missing ones
            at weight 0. A list of equal counts computes what the int does.
        dropout: on the output before the residual.
        batch_first: must be True; ``im2col_step``: mmcv's CUDA setting, accepted and
            unused; ``value_proj_ratio``: must be 1.

    Parameters (mmcv's names): ``sampling_offsets`` (C -> heads * levels * points * 2; with
    a list, C -> heads * sum(points) * 2, each head's points level after level, as
    RT-DETRv2's), ``attention_weights`` (C -> heads * levels * points, or heads *
    sum(points)), ``value_proj``, ``output_proj``.
    """

    def __init__(self, embed_dims=256, num_heads=8, num_levels=4, num_points=4, dropout=0.1,
                 batch_first=True, im2col_step=64, value_proj_ratio=1.0):  # fmt: skip
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(
                f"MultiScaleDeformableAttention: embed_dims {embed_dims} is not divisible by "
                f"num_heads {num_heads}"
            )
        if not batch_first:
            raise ValueError("MultiScaleDeformableAttention: batch_first=False is not supported")
        if value_proj_ratio != 1.0:
            raise ValueError("MultiScaleDeformableAttention: value_proj_ratio must be 1.0")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        if isinstance(num_points, (list, tuple)):
            if len(num_points) != num_levels or min(num_points) < 1:
                raise ValueError(
                    f"MultiScaleDeformableAttention: num_points {list(num_points)} must give "
                    f"one positive count per level ({num_levels} levels)"
                )
            self.points_per_level = [int(p) for p in num_points]
            self.num_points = max(self.points_per_level)
        else:
            self.points_per_level = None
            self.num_points = int(num_points)
        total = sum(self.points_per_level or [self.num_points] * num_levels)
        samples = num_heads * total
        if self.points_per_level is not None:
            # the (level, slot) cells of the padded (levels, max points) layout: the index of
            # their point among the sum(points) and whether the level has that many
            slot = torch.arange(self.num_points)
            starts = torch.tensor([0, *self.points_per_level[:-1]]).cumsum(0)
            counts = torch.tensor(self.points_per_level)
            valid = slot[None] < counts[:, None]
            index = torch.where(valid, starts[:, None] + slot[None], 0)
            self.register_buffer("_point_index", index.flatten(), persistent=False)
            self.register_buffer("_point_valid", valid.flatten(), persistent=False)
            scale = torch.cat([torch.full((p,), 1.0 / p) for p in self.points_per_level])
            self.register_buffer("_point_scale", scale, persistent=False)
        self.sampling_offsets = nn.Linear(embed_dims, samples * 2)
        self.attention_weights = nn.Linear(embed_dims, samples)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.init_weights()

    def init_weights(self):
        """Deformable DETR's: zero offset weights, the offset biases pointing head ``h`` at
        angle ``2 pi h / heads`` (on the unit square's border), point ``k`` at ``k + 1``
        times that; uniform attention (zero weights and biases); xavier value and output
        projections with zero biases."""
        nn.init.zeros_(self.sampling_offsets.weight)
        step = 2.0 * math.pi / self.num_heads
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * step
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        if self.points_per_level is None:
            grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
            grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32)[:, None]
        else:  # point k of a level at k + 1 times the head's direction (RT-DETRv2's)
            steps = torch.cat([torch.arange(1, p + 1) for p in self.points_per_level])
            grid = grid.view(self.num_heads, 1, 2) * steps.to(torch.float32)[None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query, value=None, identity=None, query_pos=None, key_padding_mask=None,
                reference_points=None, spatial_shapes=None, level_start_index=None,
                spatial_shapes_list=None, **kwargs):  # fmt: skip
        """(B, Q, C) queries (``query_pos`` added for the offsets and weights), (B, V, C)
        value (default: the query) with (B, V) ``key_padding_mask`` (True: padding, zeroed),
        ``reference_points`` (B, Q, num_levels or 1, 2) ``(x, y)`` or (B, Q, num_levels or
        1, 4)
        ``(cx, cy, w, h)`` (offsets then scale with half the box over ``num_points``), all in
        [0, 1] of each level -> (B, Q, C) (``identity`` (default: the query) added)."""
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        batch, num_queries, _ = query.shape
        num_values = value.size(1)
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, num_values, heads, -1)
        if self.points_per_level is not None:
            offsets, weights = self._padded_points(query, reference_points)
        else:
            offsets = self.sampling_offsets(query).view(batch, num_queries, heads, levels,
                                                        points, 2)  # fmt: skip
            weights = self.attention_weights(query).view(batch, num_queries, heads,
                                                         levels * points)  # fmt: skip
            weights = weights.softmax(-1).view(batch, num_queries, heads, levels, points)
        if reference_points.size(-1) == 2:
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            locations = (reference_points[:, :, None, :, None, :]
                         + offsets / normalizer[None, None, None, :, None, :])  # fmt: skip
        elif reference_points.size(-1) == 4:
            locations = (reference_points[:, :, None, :, None, :2] + offsets / points
                         * reference_points[:, :, None, :, None, 2:] * 0.5)  # fmt: skip
        else:
            raise ValueError(
                f"MultiScaleDeformableAttention: reference_points must end in 2 (x, y) or 4 "
                f"(cx, cy, w, h), got {tuple(reference_points.shape)}"
            )
        if _exporting():  # standard ops only in the exported graph
            shapes = spatial_shapes_list if spatial_shapes_list is not None else spatial_shapes
            output = ms_deform_attn_reference(value, shapes, locations, weights)
        else:
            output = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights)
        return identity + self.dropout(self.output_proj(output))

    def _padded_points(self, query, reference_points):
        """Per-level point counts: the (B, Q, heads, levels, max points, 2) offsets and
        (B, Q, heads, levels, max points) weights of the padded layout, the weights
        softmaxed over each head's ``sum(num_points)`` points and 0 on the missing slots;
        with box references each level's offsets are already divided by its count (and
        multiplied by ``num_points``, which the box branch of :meth:`forward` divides by)."""
        batch, num_queries, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        offsets = self.sampling_offsets(query).view(batch, num_queries, heads, -1, 2)
        weights = self.attention_weights(query).view(batch, num_queries, heads, -1).softmax(-1)
        if reference_points.size(-1) == 4:
            offsets = offsets * (self._point_scale * points).to(offsets.dtype)[:, None]
        offsets = offsets[:, :, :, self._point_index].view(batch, num_queries, heads, levels,
                                                           points, 2)  # fmt: skip
        weights = weights[:, :, :, self._point_index] * self._point_valid.to(weights.dtype)
        return offsets, weights.view(batch, num_queries, heads, levels, points)


def build_deformable_attention(cfg, where):
    """A :class:`MultiScaleDeformableAttention` from ``cfg`` (its keys checked)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - _DEFORM_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; it takes {sorted(_DEFORM_KEYS)}")
    return MultiScaleDeformableAttention(**cfg)


class DeformableDetrTransformerEncoderLayer(DetrTransformerEncoderLayer):
    """Deformable self-attention over the levels and a feed-forward network, each followed
    by a LayerNorm (post-norm). ``self_attn_cfg``: :class:`MultiScaleDeformableAttention`
    arguments; ``ffn_cfg``: ``FFN`` arguments."""

    def _init_layers(self):
        self.self_attn = build_deformable_attention(
            self.self_attn_cfg, "encoder.layer_cfg.self_attn_cfg"
        )
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = build_ffn(self.ffn_cfg, "encoder.layer_cfg.ffn_cfg")
        self.norms = nn.ModuleList(nn.LayerNorm(self.embed_dims) for _ in range(2))

    def forward(self, query, query_pos, key_padding_mask, **kwargs):
        """(B, L, C) flattened levels with (B, L, C) positions and (B, L) padding mask;
        ``reference_points``, ``spatial_shapes``, ``level_start_index``,
        ``spatial_shapes_list`` as the attention takes them -> (B, L, C)."""
        query = self.self_attn(query, query_pos=query_pos, key_padding_mask=key_padding_mask,
                               **kwargs)  # fmt: skip
        query = self.norms[0](query)
        return self.norms[1](self.ffn(query))


class DeformableDetrTransformerDecoderLayer(DetrTransformerDecoderLayer):
    """Self-attention among the queries (``MultiheadAttention``), deformable
    cross-attention to the memory and a feed-forward network, each followed by a
    LayerNorm."""

    def _init_layers(self):
        self.self_attn = build_attention(self.self_attn_cfg, "decoder.layer_cfg.self_attn_cfg")
        self.cross_attn = build_deformable_attention(
            self.cross_attn_cfg, "decoder.layer_cfg.cross_attn_cfg"
        )
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = build_ffn(self.ffn_cfg, "decoder.layer_cfg.ffn_cfg")
        self.norms = nn.ModuleList(nn.LayerNorm(self.embed_dims) for _ in range(3))

    def forward(self, query, value, query_pos=None, key_padding_mask=None, self_attn_mask=None,
                **kwargs):  # fmt: skip
        """(B, Q, C) queries with (B, Q, C) positions, (B, V, C) memory with (B, V)
        padding mask; ``self_attn_mask`` (Q, Q) bool, True where a query may not attend
        (DINO's denoising groups), or ``None``; ``reference_points`` (B, Q, num_levels, 2
        or 4) and the level shapes -> (B, Q, C)."""
        query = self.self_attn(query, query_pos=query_pos, key_pos=query_pos,
                               attn_mask=self_attn_mask)  # fmt: skip
        query = self.norms[0](query)
        query = self.cross_attn(query, value=value, query_pos=query_pos,
                                key_padding_mask=key_padding_mask, **kwargs)  # fmt: skip
        query = self.norms[1](query)
        return self.norms[2](self.ffn(query))


def _stack(layer_type, num_layers, layer_cfg, where):
    if num_layers < 1:
        raise ValueError(f"{where}.num_layers must be at least 1, got {num_layers}")
    return nn.ModuleList(layer_type(**copy.deepcopy(layer_cfg)) for _ in range(num_layers))


class DeformableDetrTransformerEncoder(nn.Module):
    """``num_layers`` deformable encoder layers; each cell's reference point is its own
    centre, on every level (scaled by the levels' valid ratios)."""

    def __init__(self, num_layers, layer_cfg):
        super().__init__()
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.layers = _stack(DeformableDetrTransformerEncoderLayer, num_layers, layer_cfg,
                             "encoder")  # fmt: skip
        self.embed_dims = self.layers[0].embed_dims
        self.num_levels = self.layers[0].self_attn.num_levels

    @staticmethod
    def get_encoder_reference_points(spatial_shapes_list, valid_ratios, device):
        """The cells' centres ``(x, y)`` normalised by each level's valid size, seen on
        every level: (B, sum h * w, num_levels, 2) from the level shapes and (B, levels, 2)
        ``(w, h)`` valid ratios."""
        points = []
        for level, (height, width) in enumerate(spatial_shapes_list):
            ref_y, ref_x = torch.meshgrid(
                torch.arange(height, dtype=valid_ratios.dtype, device=device) + 0.5,
                torch.arange(width, dtype=valid_ratios.dtype, device=device) + 0.5,
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * height)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * width)
            points.append(torch.stack((ref_x, ref_y), -1))
        return torch.cat(points, 1)[:, :, None] * valid_ratios[:, None]

    def forward(self, query, query_pos, key_padding_mask, spatial_shapes, level_start_index,
                valid_ratios, spatial_shapes_list):  # fmt: skip
        """(B, L, C) flattened levels, positions (with the level embeddings), (B, L)
        padding mask or ``None``, the level shapes and (B, levels, 2) valid ratios ->
        (B, L, C)."""
        reference_points = self.get_encoder_reference_points(
            spatial_shapes_list, valid_ratios, query.device
        )
        for layer in self.layers:
            query = layer(query, query_pos, key_padding_mask, reference_points=reference_points,
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          spatial_shapes_list=spatial_shapes_list)  # fmt: skip
        return query


class DeformableDetrTransformerDecoder(nn.Module):
    """``num_layers`` deformable decoder layers (no final norm).

    Args:
        num_layers, layer_cfg: the layers.
        return_intermediate: return every layer's output (the auxiliary losses); must be
            True (the head reads every layer).
    """

    def __init__(self, num_layers, layer_cfg, return_intermediate=True):
        super().__init__()
        if not return_intermediate:
            raise ValueError(
                "decoder.return_intermediate=False: Deformable DETR's head reads every layer"
            )
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.return_intermediate = True
        self.layers = _stack(DeformableDetrTransformerDecoderLayer, num_layers, layer_cfg,
                             "decoder")  # fmt: skip
        self.embed_dims = self.layers[0].embed_dims
        self.num_levels = self.layers[0].cross_attn.num_levels

    def forward(self, query, query_pos, value, key_padding_mask, reference_points,
                spatial_shapes, level_start_index, valid_ratios, spatial_shapes_list,
                reg_branches=None):  # fmt: skip
        """(B, Q, C) queries and positions, (B, V, C) memory and (B, V) padding mask (or
        ``None``), (B, Q, 2) ``(x, y)`` or (B, Q, 4) ``(cx, cy, w, h)`` reference points in
        [0, 1] of the valid image, the level shapes, (B, levels, 2) valid ratios;
        ``reg_branches`` (iterative box refinement): layer ``i``'s box branch moves the
        reference points for layer ``i + 1`` (in inverse-sigmoid space, detached).

        Returns:
            ``(hidden_states, references)``: (num_layers, B, Q, C) every layer's output and
            (num_layers, B, Q, 2 or 4) the reference points after each layer.
        """
        outputs, references = [], []
        for index, layer in enumerate(self.layers):
            if reference_points.size(-1) == 4:
                scale = torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            else:
                scale = valid_ratios[:, None]
            query = layer(query, value, query_pos=query_pos, key_padding_mask=key_padding_mask,
                          reference_points=reference_points[:, :, None] * scale,
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          spatial_shapes_list=spatial_shapes_list)  # fmt: skip
            if reg_branches is not None:
                delta = reg_branches[index](query)
                if reference_points.size(-1) == 4:
                    new_points = delta + inverse_sigmoid(reference_points)
                else:
                    new_points = torch.cat(
                        [delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]], -1
                    )
                reference_points = new_points.sigmoid().detach()
            outputs.append(query)
            references.append(reference_points)
        return torch.stack(outputs), torch.stack(references)
