"""Deformable DETR (Zhu et al. 2021): several levels (the neck's, e.g. C3-C5 and one
stride-2 level, each projected to the transformer's width with a GroupNorm) flattened into
one sequence with sine positions plus a learned embedding per level, a deformable encoder,
and ``num_queries`` queries decoded by deformable cross-attention around reference points;
optionally with iterative box refinement (``with_box_refine``) and two-stage proposals from
the encoder's output (``as_two_stage``)."""

import math

import torch
from torch import nn

from mmdet_like.models.detectors.detection_transformer import DetectionTransformer
from mmdet_like.models.detectors.detr import build_positional_encoding, resize_mask
from mmdet_like.models.layers.transformer import (
    DeformableDetrTransformerDecoder,
    DeformableDetrTransformerEncoder,
    MultiScaleDeformableAttention,
)
from mmdet_like.registry import DETECTORS


def sizes_as_tensor(sizes, like):
    """[(a, b), ...] ints -> (n, 2) int64 tensor on ``like``'s device. Built by multiplying a
    one by each size, so that sizes that are symbolic under ``torch.export`` (a dynamic image
    size) stay symbolic instead of being fixed to the traced values."""
    one = like.new_ones((), dtype=torch.long)
    return torch.stack([torch.stack([one * a, one * b]) for a, b in sizes])


def valid_ratios_of(mask):
    """(B, h, w) padding mask -> (B, 2) ``(w, h)`` share of the map that is the image."""
    _, height, width = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).to(torch.float32) / height
    valid_w = (~mask[:, 0, :]).sum(1).to(torch.float32) / width
    return torch.stack([valid_w, valid_h], -1)


@DETECTORS.register()
class DeformableDETR(DetectionTransformer):
    """Deformable DETR on :class:`DetectionTransformer`.

    Args:
        with_box_refine: each decoder layer's box branch moves the next layer's reference
            points (the head's branches are then one per layer, else shared).
        as_two_stage: the queries are the ``num_queries`` best encoder cells (scored by an
            extra classifier, their boxes from an extra box branch on each cell's proposal),
            their positions from the boxes' sine embedding; trained by the head's ``enc_*``
            losses.
        num_feature_levels: the neck's outputs (``neck.num_outs``), the attention's
            ``num_levels``.
        Others: :class:`DetectionTransformer`'s (``encoder`` / ``decoder``:
            ``DeformableDetrTransformerEncoder`` / ``...Decoder`` configs;
            ``positional_encoding``: ``SinePositionalEncoding`` with ``offset=-0.5``).

    Parameters (mmdetection's names): ``level_embed`` (levels, C); ``query_embedding``
    (num_queries, 2C: positions then queries) and ``reference_points_fc`` without two-stage;
    ``memory_trans_fc`` / ``memory_trans_norm`` and ``pos_trans_fc`` / ``pos_trans_norm``
    with it.
    """

    decoder_type = DeformableDetrTransformerDecoder

    def __init__(self, *args, with_box_refine=False, as_two_stage=False, num_feature_levels=4,
                 **kwargs):  # fmt: skip
        self.with_box_refine = bool(with_box_refine)
        self.as_two_stage = bool(as_two_stage)
        self.num_feature_levels = int(num_feature_levels)
        decoder = kwargs.get("decoder")
        bbox_head = kwargs.get("bbox_head")
        if decoder is None or bbox_head is None:
            raise ValueError("DeformableDETR: give model.decoder and model.bbox_head configs")
        num_layers = int(decoder["num_layers"])
        kwargs["bbox_head"] = dict(
            bbox_head,
            share_pred_layer=not self.with_box_refine,
            num_pred_layer=num_layers + 1 if self.as_two_stage else num_layers,
            as_two_stage=self.as_two_stage,
        )
        super().__init__(*args, **kwargs)

    def _init_layers(self):
        if self.encoder_cfg is None:
            raise ValueError("DeformableDETR: give a model.encoder config")
        self.encoder = DeformableDetrTransformerEncoder(**self.encoder_cfg)
        self.decoder = self.decoder_type(**self.decoder_cfg)
        self.embed_dims = self.encoder.embed_dims
        for part, width in (("decoder", self.decoder.embed_dims),
                            ("bbox_head", self.bbox_head.embed_dims)):  # fmt: skip
            if width != self.embed_dims:
                raise ValueError(
                    f"DeformableDETR: {part}.embed_dims={width} differs from the encoder's "
                    f"{self.embed_dims}; set it to {self.embed_dims}"
                )
        levels = {"encoder self_attn_cfg.num_levels": self.encoder.num_levels,
                  "decoder cross_attn_cfg.num_levels": self.decoder.num_levels}  # fmt: skip
        if self.neck is not None:
            levels["neck.num_outs"] = self.neck.num_outs
            if self.neck.out_channels != self.embed_dims:
                raise ValueError(
                    f"DeformableDETR: neck.out_channels={self.neck.out_channels}, the "
                    f"transformer has embed_dims={self.embed_dims}; set them equal"
                )
        for name, value in levels.items():
            if value != self.num_feature_levels:
                raise ValueError(
                    f"DeformableDETR: {name}={value} differs from num_feature_levels="
                    f"{self.num_feature_levels}; set them equal"
                )
        self.positional_encoding = build_positional_encoding(
            self.positional_encoding_cfg, self.embed_dims
        )
        self.level_embed = nn.Parameter(torch.zeros(self.num_feature_levels, self.embed_dims))
        self._init_query_layers()

    def _init_query_layers(self):
        """The layers that make the decoder's queries (two-stage: the proposals' memory and
        position transforms; else the query embedding and reference point layer)."""
        dims = self.embed_dims
        if self.as_two_stage:
            self.memory_trans_fc = nn.Linear(dims, dims)
            self.memory_trans_norm = nn.LayerNorm(dims)
            self.pos_trans_fc = nn.Linear(dims * 2, dims * 2)
            self.pos_trans_norm = nn.LayerNorm(dims * 2)
        else:
            self.query_embedding = nn.Embedding(self.num_queries, dims * 2)
            self.reference_points_fc = nn.Linear(dims, 2)

    def init_transformer_weights(self):
        """Xavier matrices in the encoder and decoder, then the deformable attentions' own
        initialisation; xavier ``reference_points_fc`` with a zero bias; normal level
        embeddings (mmdetection's)."""
        super().init_transformer_weights()
        for module in self.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.init_weights()
        if not self.as_two_stage:
            nn.init.xavier_uniform_(self.reference_points_fc.weight)
            nn.init.zeros_(self.reference_points_fc.bias)
        nn.init.normal_(self.level_embed)

    # ------------------------------------------------------------------ the steps
    def pre_transformer(self, img_feats, masks, data_samples=None):
        """The levels (B, C, h_l, w_l) flattened into (B, sum h_l w_l, C), their positions
        plus level embeddings, padding mask (``None`` without padding), shapes, start
        indices and (B, levels, 2) valid ratios."""
        if len(img_feats) != self.num_feature_levels:
            raise ValueError(
                f"DeformableDETR: the neck gave {len(img_feats)} levels, num_feature_levels="
                f"{self.num_feature_levels}"
            )
        feats, pos_embeds, level_masks, shapes, ratios = [], [], [], [], []
        for level, feat in enumerate(img_feats):
            batch, _, height, width = feat.shape
            if masks is None:
                mask = feat.new_zeros((batch, height, width), dtype=torch.bool)
            else:
                mask = resize_mask(masks, (height, width))
                level_masks.append(mask.flatten(1))
                ratios.append(valid_ratios_of(mask))
            pos = self.positional_encoding(mask).to(feat.dtype).flatten(2).transpose(1, 2)
            pos_embeds.append(pos + self.level_embed[level].view(1, 1, -1))
            feats.append(feat.flatten(2).transpose(1, 2))
            shapes.append((height, width))
        feat = torch.cat(feats, 1)
        feat_pos = torch.cat(pos_embeds, 1)
        feat_mask = torch.cat(level_masks, 1) if masks is not None else None
        if masks is None:
            valid_ratios = feat.new_ones((feat.size(0), len(shapes), 2))
        else:
            valid_ratios = torch.stack(ratios, 1).to(feat.dtype)
        spatial_shapes = sizes_as_tensor(shapes, feat)
        level_start_index = torch.cat(
            (spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1])
        )
        common = dict(spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                      valid_ratios=valid_ratios, spatial_shapes_list=shapes)  # fmt: skip
        encoder_inputs = dict(feat=feat, feat_mask=feat_mask, feat_pos=feat_pos, **common)
        decoder_inputs = dict(memory_mask=feat_mask, **common)
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, feat, feat_mask, feat_pos, spatial_shapes, level_start_index,
                        valid_ratios, spatial_shapes_list):  # fmt: skip
        memory = self.encoder(feat, feat_pos, feat_mask, spatial_shapes, level_start_index,
                              valid_ratios, spatial_shapes_list)  # fmt: skip
        return dict(memory=memory, memory_mask=feat_mask, spatial_shapes_list=spatial_shapes_list)

    def pre_decoder(self, memory, memory_mask, spatial_shapes_list):
        """Queries, positions and (B, Q, 2 or 4) reference points: learned ones (positions
        and queries from ``query_embedding``, reference points ``sigmoid(reference_points_fc(
        position))``), or with two-stage the ``num_queries`` encoder cells of the highest
        class-0 logit (their boxes, detached, as reference points; positions and queries
        from the boxes' sine embedding). The head's inputs: the encoder's proposal logits and
        boxes (two-stage, training)."""
        batch, _, dims = memory.shape
        head_inputs = {}
        if self.as_two_stage:
            output_memory, output_proposals = self.gen_encoder_output_proposals(
                memory, memory_mask, spatial_shapes_list
            )
            layer = self.decoder.num_layers
            enc_outputs_class = self.bbox_head.cls_branches[layer](output_memory)
            enc_coords_unact = self.bbox_head.reg_branches[layer](output_memory) + output_proposals
            topk = torch.topk(enc_outputs_class[..., 0], k=self.num_queries, dim=1)[1]
            topk_coords_unact = torch.gather(
                enc_coords_unact, 1, topk[..., None].expand(-1, -1, 4)
            ).detach()
            reference_points = topk_coords_unact.sigmoid()
            pos_trans = self.pos_trans_norm(
                self.pos_trans_fc(self.get_proposal_pos_embed(topk_coords_unact))
            )
            query_pos, query = torch.split(pos_trans, dims, dim=2)
            if self.training:
                head_inputs = dict(enc_outputs_class=enc_outputs_class,
                                   enc_outputs_coord=enc_coords_unact.sigmoid())  # fmt: skip
        else:
            query_pos, query = torch.split(self.query_embedding.weight, dims, dim=1)
            query_pos = query_pos[None].expand(batch, -1, -1)
            query = query[None].expand(batch, -1, -1)
            reference_points = self.reference_points_fc(query_pos).sigmoid()
        decoder_inputs = dict(query=query, query_pos=query_pos, memory=memory,
                              reference_points=reference_points)  # fmt: skip
        return decoder_inputs, head_inputs

    def forward_decoder(self, query, query_pos, memory, memory_mask, reference_points,
                        spatial_shapes, level_start_index, valid_ratios,
                        spatial_shapes_list):  # fmt: skip
        hidden_states, inter_references = self.decoder(
            query, query_pos, memory, memory_mask, reference_points, spatial_shapes,
            level_start_index, valid_ratios, spatial_shapes_list,
            reg_branches=self.bbox_head.reg_branches if self.with_box_refine else None,
        )  # fmt: skip
        return dict(hidden_states=hidden_states, references=[reference_points, *inter_references])

    # ------------------------------------------------------------------ two-stage parts
    def gen_encoder_output_proposals(self, memory, memory_mask, spatial_shapes_list):
        """A proposal per encoder cell: its centre with sides ``0.05 * 2 ** level`` of the
        valid image, in inverse-sigmoid space ((B, V, 4); ``inf`` at padding and where a
        coordinate is outside (0.01, 0.99)), and the memory (zeroed there) through
        ``memory_trans_fc`` and ``memory_trans_norm`` ((B, V, C))."""
        batch = memory.size(0)
        proposals, start = [], 0
        for level, (height, width) in enumerate(spatial_shapes_list):
            if memory_mask is not None:
                mask = memory_mask[:, start : start + height * width].view(batch, height, width)
                valid_h = (~mask[:, :, 0]).sum(1)
                valid_w = (~mask[:, 0, :]).sum(1)
                scale = torch.stack([valid_w, valid_h], -1).view(batch, 1, 1, 2).to(memory.dtype)
            else:
                scale = sizes_as_tensor([(width, height)], memory).to(memory.dtype)
                scale = scale.view(1, 1, 1, 2)
            grid_y, grid_x = torch.meshgrid(
                torch.arange(height, dtype=memory.dtype, device=memory.device),
                torch.arange(width, dtype=memory.dtype, device=memory.device),
                indexing="ij",
            )
            grid = torch.stack([grid_x, grid_y], -1)
            grid = (grid[None].expand(batch, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0**level)
            proposals.append(torch.cat((grid, wh), -1).view(batch, -1, 4))
            start += height * width
        proposals = torch.cat(proposals, 1)
        valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
        proposals = torch.log(proposals / (1 - proposals))
        invalid = ~valid
        if memory_mask is not None:
            invalid = invalid | memory_mask[..., None]
        proposals = proposals.masked_fill(invalid, float("inf"))
        output_memory = memory.masked_fill(invalid, 0.0)
        return self.memory_trans_norm(self.memory_trans_fc(output_memory)), proposals

    def get_proposal_pos_embed(self, proposals, temperature=10000):
        """(B, Q, 4) boxes in inverse-sigmoid space -> (B, Q, 2C) sine embedding of their
        sigmoid (``C / 2`` channels per coordinate, sine and cosine interleaved)."""
        num_feats = self.embed_dims // 2
        dim_t = torch.arange(num_feats, dtype=torch.float32, device=proposals.device)
        dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
        pos = (proposals.sigmoid().to(torch.float32) * (2 * math.pi))[..., None] / dim_t
        pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(2)
        return pos.to(proposals.dtype)
