"""DINO (Zhang et al. 2022): a two-stage Deformable DETR with box refinement and

- mixed query selection: the ``num_queries`` encoder cells of the highest class logit give
  the reference boxes (detached), the content queries are a learned embedding;
- contrastive denoising in training: noised copies of the gts (``CdnQueryGenerator``) go
  before the matching queries, kept apart by a self-attention mask, trained to reconstruct
  their gts (positives) or call background (negatives);
- look forward twice: each decoder layer's box loss reaches the previous layer's box
  branch (``DinoTransformerDecoder``).

mmdetection 3's ``DINO`` in behaviour and parameter names (``query_embedding``,
``memory_trans_fc`` / ``memory_trans_norm``, ``dn_query_generator.label_embedding``,
``decoder.ref_point_head``, ``decoder.norm``).
"""

import torch
from torch import nn

from mmdet_like.models.detectors.deformable_detr import DeformableDETR
from mmdet_like.models.layers.transformer import CdnQueryGenerator, DinoTransformerDecoder
from mmdet_like.registry import DETECTORS
from mmdet_like.structures.instances import unpack_gt_instances


@DETECTORS.register()
class DINO(DeformableDETR):
    """DINO on :class:`DeformableDETR` (``with_box_refine`` and ``as_two_stage`` always on).

    Args:
        dn_cfg: ``CdnQueryGenerator`` settings (``label_noise_scale`` 0.5,
            ``box_noise_scale`` 1.0, ``group_cfg=dict(dynamic=True, num_dn_queries=100)``,
            ``noise_draws`` ``"sync_free"``, or ``"mmdetection"`` for mmdetection 3's draw
            order); ``None``: no denoising queries.
        Others: :class:`DeformableDETR`'s (``decoder``: a ``DinoTransformerDecoder`` config;
            ``bbox_head``: a ``DINOHead``).
    """

    decoder_type = DinoTransformerDecoder

    def __init__(self, *args, dn_cfg=None, with_box_refine=True, as_two_stage=True, **kwargs):
        if not (with_box_refine and as_two_stage):
            raise ValueError(
                "DINO: with_box_refine and as_two_stage must be True (DINO refines boxes and "
                "selects its reference boxes from the encoder); remove them from the config"
            )
        self.dn_cfg = None if dn_cfg is None else dict(dn_cfg)
        super().__init__(*args, with_box_refine=True, as_two_stage=True, **kwargs)

    def _init_query_layers(self):
        dims = self.embed_dims
        self.memory_trans_fc = nn.Linear(dims, dims)
        self.memory_trans_norm = nn.LayerNorm(dims)
        self.query_embedding = nn.Embedding(self.num_queries, dims)
        self.dn_query_generator = None
        if self.dn_cfg is not None:
            for key in ("num_classes", "embed_dims", "num_matching_queries"):
                if key in self.dn_cfg:
                    raise ValueError(f"DINO: dn_cfg.{key} is set by the model; remove it")
            self.dn_query_generator = CdnQueryGenerator(
                num_classes=self.num_classes, embed_dims=dims,
                num_matching_queries=self.num_queries, **self.dn_cfg,
            )  # fmt: skip

    def init_transformer_weights(self):
        """:meth:`DeformableDETR.init_transformer_weights`, then xavier ``memory_trans_fc``
        and ``query_embedding`` (mmdetection's); the label embedding keeps its N(0, 1)."""
        super().init_transformer_weights()
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)
        nn.init.xavier_uniform_(self.query_embedding.weight)

    # ------------------------------------------------------------------ the steps
    def forward_transformer(self, img_feats, masks, data_samples=None):
        """:meth:`DetectionTransformer.forward_transformer` with the samples (their gts
        make the denoising queries) passed to :meth:`pre_decoder`."""
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, masks, data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        tmp_decoder_inputs, head_inputs = self.pre_decoder(**encoder_outputs,
                                                           data_samples=data_samples)  # fmt: skip
        decoder_inputs.update(tmp_decoder_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def pre_decoder(self, memory, memory_mask, spatial_shapes_list, data_samples=None):
        """Mixed query selection: the ``num_queries`` cells of the highest encoder logit
        (over classes); their boxes (detached) are the (B, Q, 4) reference boxes, the
        queries ``query_embedding``. In training the denoising queries go first (D of
        them, with their (D + Q, D + Q) attention mask), and the head gets the selected
        cells' (B, Q, num_classes) logits and (B, Q, 4) boxes and ``dn_meta``."""
        batch = memory.size(0)
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, memory_mask, spatial_shapes_list
        )
        layer = self.decoder.num_layers
        enc_outputs_class = self.bbox_head.cls_branches[layer](output_memory)
        enc_coords_unact = self.bbox_head.reg_branches[layer](output_memory) + output_proposals
        if enc_outputs_class.size(1) < self.num_queries:
            raise ValueError(
                f"DINO: the encoder has {enc_outputs_class.size(1)} cells, fewer than "
                f"num_queries={self.num_queries}; use larger images or fewer queries"
            )
        topk = torch.topk(enc_outputs_class.max(-1)[0], k=self.num_queries, dim=1)[1]
        topk_score = torch.gather(
            enc_outputs_class, 1, topk[..., None].expand(-1, -1, enc_outputs_class.size(-1))
        )
        topk_coords_unact = torch.gather(enc_coords_unact, 1, topk[..., None].expand(-1, -1, 4))
        topk_coords = topk_coords_unact.sigmoid()
        reference_unact = topk_coords_unact.detach()
        query = self.query_embedding.weight[None].expand(batch, -1, -1)
        dn_mask = dn_meta = None
        if self.training and self.dn_query_generator is not None:
            if data_samples is None:
                raise ValueError("DINO: training needs the data samples' gts (denoising)")
            gts, _, metas = unpack_gt_instances(data_samples)
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = self.dn_query_generator(gts, metas)
            query = torch.cat([dn_label_query.to(query.dtype), query], 1)
            reference_unact = torch.cat([dn_bbox_query.to(reference_unact.dtype),
                                         reference_unact], 1)  # fmt: skip
        reference_points = reference_unact.sigmoid()
        decoder_inputs = dict(query=query, memory=memory, reference_points=reference_points,
                              dn_mask=dn_mask)  # fmt: skip
        head_inputs = {}
        if self.training:
            head_inputs = dict(enc_outputs_class=topk_score, enc_outputs_coord=topk_coords,
                               dn_meta=dn_meta)  # fmt: skip
        return decoder_inputs, head_inputs

    def forward_decoder(self, query, memory, memory_mask, reference_points, spatial_shapes,
                        level_start_index, valid_ratios, spatial_shapes_list,
                        dn_mask=None):  # fmt: skip
        """The DINO decoder with the head's box branches; every layer's (L, B, D + Q, C)
        output and L + 1 references."""
        hidden_states, references = self.decoder(
            query, memory, memory_mask, dn_mask, reference_points, spatial_shapes,
            level_start_index, valid_ratios, spatial_shapes_list,
            reg_branches=self.bbox_head.reg_branches,
        )  # fmt: skip
        if self.training and self.dn_query_generator is not None and dn_mask is not None:
            if query.size(1) == self.num_queries:  # no gts in the batch: no denoising query;
                # keep the label embedding in the graph (distributed training expects every
                # parameter to get a gradient), as mmdetection does
                weight = self.dn_query_generator.label_embedding.weight
                hidden_states = hidden_states + weight[0, 0] * 0.0
        return dict(hidden_states=hidden_states, references=references)
