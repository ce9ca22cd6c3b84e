"""RT-DETR (Zhao et al. 2024, "DETRs Beat YOLOs on Real-time Object Detection"): a
ResNet-vd backbone, the hybrid encoder as the neck (``HybridEncoder``: one transformer layer
on the coarsest level, CSP/RepVGG fusion across levels), and a deformable decoder whose
queries are the encoder's best cells:

- IoU-aware query selection: every cell of the (projected) levels gets class logits and a
  box (relative to an anchor of side ``0.05 * 2 ** level`` at the cell); the
  ``num_queries`` cells of the highest logit give the reference boxes (detached) and, by
  default, the content queries (their memory, detached); the classifier is trained by the
  varifocal loss towards the IoU, so that high scores mean good boxes;
- contrastive denoising in training (``RTDETRCdnQueryGenerator``);
- box refinement in every decoder layer, with auxiliary losses on each layer, on the
  selected cells and on the denoising queries (``RTDETRHead``).

No padding mask anywhere (the authors' code has none): the boxes are relative to the
padded batch. Parameter names: ``decoder_input_proj`` (a ``ChannelMapper``: 1x1 conv + BN
per level, 3x3 stride-2 conv + BN for extra levels), ``memory_trans_fc`` /
``memory_trans_norm`` (the authors' ``enc_output``), ``query_embedding``
(``learn_initial_query``), ``dn_query_generator.label_embedding``,
``decoder.query_pos_head``, ``bbox_head.{cls,reg}_branches.{i}`` (``i`` = the decoder's
layer count: the encoder's ``enc_score_head`` / ``enc_bbox_head``).
"""

import random

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.dense_heads.rtdetr_head import frame_factors
from mmdet_like.models.detectors.base import ExportSpec, pad_images
from mmdet_like.models.detectors.deformable_detr import sizes_as_tensor
from mmdet_like.models.detectors.detection_transformer import DetectionTransformer
from mmdet_like.models.layers.transformer import MultiScaleDeformableAttention
from mmdet_like.models.layers.transformer.rtdetr_layers import (
    RTDETRCdnQueryGenerator,
    RTDETRTransformerDecoder,
)
from mmdet_like.models.necks import ChannelMapper
from mmdet_like.registry import DETECTORS
from mmdet_like.structures.instance_data import DetDataSample, InstanceData
from mmdet_like.structures.instances import unpack_gt_instances


@DETECTORS.register()
class RTDETR(DetectionTransformer):
    """RT-DETR on :class:`DetectionTransformer` (the transformer encoder is the neck's:
    :meth:`forward_encoder` passes the flattened levels on).

    Args:
        backbone: a ``ResNet`` (RT-DETR's: ``deep_stem``, ``avg_down``,
            ``conv_shortcut_first_block``; levels C3-C5).
        neck: a ``HybridEncoder``.
        decoder: ``RTDETRTransformerDecoder`` arguments (``num_layers``, ``layer_cfg``,
            ``look_forward_twice``).
        bbox_head: an ``RTDETRHead`` (its branch count is set here).
        num_queries: the selected cells (300).
        num_feature_levels: the decoder's levels (the neck's outputs, plus 3x3 stride-2
            levels on the last one when more).
        dn_cfg: ``RTDETRCdnQueryGenerator`` settings (``label_noise_scale`` 0.5,
            ``box_noise_scale`` 1.0, ``num_dn_queries`` 100); ``None``: no denoising.
        learn_initial_query: the content queries are a learned embedding, not the selected
            cells' memory.
        multi_scale: training sizes; each training batch is resized (nearest) to a square
            size drawn from them (Python's ``random``), its boxes scaled with it (the
            authors' ``RTDETR.multi_scale``, 480-800); ``None``: as given.
        anchor_size: the anchors' side on the finest level (0.05), doubled per level;
            ``anchor_eps``: cells whose anchor has a coordinate outside (eps, 1 - eps)
            are masked out of the selection's memory and get the largest box logit (the
            authors' 0.01).
        size_divisor: batches are padded to a multiple of it (32: the fusion path's
            upsampled maps must meet the finer ones).
        Others: :class:`DetectionTransformer`'s.
    """

    def __init__(self, backbone, bbox_head, neck=None, decoder=None, num_queries=300,
                 num_feature_levels=3, dn_cfg=None, learn_initial_query=False,
                 multi_scale=None, anchor_size=0.05, anchor_eps=0.01, train_cfg=None,
                 test_cfg=None, pretrained=None, size_divisor=32):  # fmt: skip
        if decoder is None or bbox_head is None:
            raise ValueError("RTDETR: give model.decoder and model.bbox_head configs")
        self.num_feature_levels = int(num_feature_levels)
        self.dn_cfg = None if dn_cfg is None else dict(dn_cfg)
        self.learn_initial_query = bool(learn_initial_query)
        self.multi_scale = None if not multi_scale else [int(s) for s in multi_scale]
        self.anchor_size = float(anchor_size)
        self.anchor_eps = float(anchor_eps)
        num_layers = int(decoder["num_layers"])
        bbox_head = dict(bbox_head, share_pred_layer=False, num_pred_layer=num_layers + 1,
                         as_two_stage=True)  # fmt: skip
        super().__init__(backbone, bbox_head, neck=neck, decoder=decoder,
                         num_queries=num_queries, train_cfg=train_cfg, test_cfg=test_cfg,
                         pretrained=pretrained, size_divisor=size_divisor)  # fmt: skip

    def _init_layers(self):
        self.decoder = RTDETRTransformerDecoder(**self.decoder_cfg)
        self.embed_dims = dims = self.decoder.embed_dims
        if self.bbox_head.embed_dims != dims:
            raise ValueError(
                f"RTDETR: bbox_head.embed_dims={self.bbox_head.embed_dims} differs from the "
                f"decoder's {dims}; set it to {dims}"
            )
        if self.decoder.num_levels != self.num_feature_levels:
            raise ValueError(
                f"RTDETR: decoder cross_attn_cfg.num_levels={self.decoder.num_levels} differs "
                f"from num_feature_levels={self.num_feature_levels}; set them equal"
            )
        source = self.neck if self.neck is not None else self.backbone
        channels = source.out_channels
        channels = [channels] * source.num_outs if isinstance(channels, int) else list(channels)
        if len(channels) > self.num_feature_levels:
            raise ValueError(
                f"RTDETR: the {'neck' if self.neck is not None else 'backbone'} gives "
                f"{len(channels)} levels, more than num_feature_levels="
                f"{self.num_feature_levels}"
            )
        self.decoder_input_proj = ChannelMapper(
            channels, dims, kernel_size=1, norm_cfg=dict(type="BN"), act_cfg=None,
            num_outs=self.num_feature_levels, bias=False,
        )  # fmt: skip
        self.memory_trans_fc = nn.Linear(dims, dims)
        self.memory_trans_norm = nn.LayerNorm(dims)
        self.query_embedding = (nn.Embedding(self.num_queries, dims)
                                if self.learn_initial_query else None)  # fmt: skip
        self.dn_query_generator = None
        if self.dn_cfg is not None:
            for key in ("num_classes", "embed_dims", "num_matching_queries"):
                if key in self.dn_cfg:
                    raise ValueError(f"RTDETR: dn_cfg.{key} is set by the model; remove it")
            self.dn_query_generator = RTDETRCdnQueryGenerator(
                num_classes=self.num_classes, embed_dims=dims,
                num_matching_queries=self.num_queries, **self.dn_cfg,
            )  # fmt: skip

    def init_transformer_weights(self):
        """Xavier-uniform decoder matrices, then each deformable attention's own
        initialisation; xavier ``memory_trans_fc``, ``query_pos_head`` and
        ``query_embedding`` (the authors'); the label embedding keeps its N(0, 1)."""
        for param in self.decoder.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        for module in self.decoder.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.init_weights()
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)
        if self.query_embedding is not None:
            nn.init.xavier_uniform_(self.query_embedding.weight)

    # ------------------------------------------------------------------ batches
    def _batch_with_shape(self, img, data_samples):
        """The padded (B, 3, H, W) batch (multi-scale resized in training) and the samples
        with ``batch_input_shape`` (H, W) in their metas (new samples: the given ones are
        left as they are)."""
        batch = pad_images(img, self.size_divisor)
        height, width = batch.shape[-2:]
        factor = None
        if self.training and self.multi_scale:
            size = random.choice(self.multi_scale)
            batch = F.interpolate(batch, size=(size, size))
            factor = (size / width, size / height)
            height = width = size
        samples = []
        for sample in data_samples:
            meta = dict(sample.metainfo, batch_input_shape=(int(height), int(width)))
            gts = sample.gt_instances
            if factor is not None:
                fx, fy = factor
                h, w = meta["img_shape"][:2]
                meta["img_shape"] = (round(h * fy), round(w * fx), *meta["img_shape"][2:])
                meta["pad_shape"] = meta["img_shape"]
                if "scale_factor" in meta:
                    base = torch.as_tensor(meta["scale_factor"], dtype=torch.float32)
                    meta["scale_factor"] = (base * torch.tensor([fx, fy, fx, fy])).numpy()
                if "bboxes" in gts:
                    fields = dict(gts.items())
                    fields["bboxes"] = gts.bboxes * gts.bboxes.new_tensor([fx, fy, fx, fy])
                    gts = InstanceData(**fields)
            samples.append(DetDataSample(metainfo=meta, gt_instances=gts,
                                         ignored_instances=sample.ignored_instances))  # fmt: skip
        return batch, samples

    def forward_train(self, img, data_samples):
        """The head's losses (``gt_instances``: ``bboxes`` in the input image, ``labels``)."""
        batch, samples = self._batch_with_shape(img, data_samples)
        head_inputs = self.forward_transformer(self.extract_feat(batch), None, samples)
        return self.bbox_head.forward_train(**head_inputs, data_samples=samples)

    @torch.no_grad()
    def predict_instances(self, img, data_samples, rescale=False):
        """N prediction :class:`InstanceData` (``bboxes``, ``scores``, ``labels``)."""
        batch, samples = self._batch_with_shape(img, data_samples)
        head_inputs = self.forward_transformer(self.extract_feat(batch), None, samples)
        metas = [s.metainfo for s in samples]
        return self.bbox_head.predict(**head_inputs, img_metas=metas, rescale=rescale)

    # ------------------------------------------------------------------ the steps
    def forward_transformer(self, img_feats, masks, data_samples=None):
        """:meth:`DetectionTransformer.forward_transformer` with the samples (their gts make
        the denoising queries) passed to :meth:`pre_decoder`; ``masks`` must be ``None``."""
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, masks, data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        tmp_decoder_inputs, head_inputs = self.pre_decoder(**encoder_outputs,
                                                           data_samples=data_samples)  # fmt: skip
        decoder_inputs.update(tmp_decoder_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def pre_transformer(self, img_feats, masks=None, data_samples=None):
        """The neck's levels through ``decoder_input_proj`` (and its extra levels),
        flattened one after the other: (B, V, C) and the level shapes."""
        if masks is not None:
            raise ValueError("RTDETR has no padding mask (the authors' model has none)")
        feats = self.decoder_input_proj(tuple(img_feats))
        shapes = [tuple(f.shape[-2:]) for f in feats]
        memory = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        spatial_shapes = sizes_as_tensor(shapes, memory)
        level_start_index = torch.cat(
            (spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1])
        )
        encoder_inputs = dict(memory=memory, spatial_shapes_list=shapes)
        decoder_inputs = dict(spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                              spatial_shapes_list=shapes)  # fmt: skip
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, memory, spatial_shapes_list):
        """The hybrid encoder ran in the neck: the flattened levels as they are."""
        return dict(memory=memory, spatial_shapes_list=spatial_shapes_list)

    def generate_anchors(self, spatial_shapes_list, like):
        """(1, V, 4) anchors in inverse-sigmoid space (each cell's centre, side
        ``anchor_size * 2 ** level``; the largest finite value where a coordinate is
        outside (eps, 1 - eps)) and their (1, V, 1) validity."""
        anchors = []
        for level, (height, width) in enumerate(spatial_shapes_list):
            grid_y, grid_x = torch.meshgrid(
                torch.arange(height, device=like.device).to(like.dtype),
                torch.arange(width, device=like.device).to(like.dtype), indexing="ij",
            )  # fmt: skip
            centre = torch.stack([(grid_x + 0.5) / width, (grid_y + 0.5) / height], -1)
            side = torch.full_like(centre, self.anchor_size * 2.0**level)
            anchors.append(torch.cat([centre, side], -1).reshape(1, -1, 4))
        anchors = torch.cat(anchors, 1)
        eps = self.anchor_eps
        valid = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
        anchors = torch.log(anchors / (1 - anchors))
        largest = torch.full((), torch.finfo(like.dtype).max, dtype=like.dtype, device=like.device)
        return torch.where(valid, anchors, largest), valid

    def pre_decoder(self, memory, spatial_shapes_list, data_samples=None):
        """IoU-aware query selection: every cell's logits (``cls_branches[L]``) and box
        (``reg_branches[L]`` plus its anchor) from the memory (zeroed at invalid anchors)
        through ``memory_trans_fc`` / ``memory_trans_norm``; the ``num_queries`` cells of
        the highest logit give the reference boxes (detached) and the content queries
        (their transformed memory, detached; or ``query_embedding``). In training the
        denoising queries go first (D of them, with their (D + Q, D + Q) mask); the head
        gets the selected cells' (B, Q, num_classes) logits and (B, Q, 4) boxes and
        ``dn_meta``."""
        batch = memory.size(0)
        anchors, valid = self.generate_anchors(spatial_shapes_list, memory)
        output_memory = self.memory_trans_norm(self.memory_trans_fc(valid.to(memory.dtype)
                                                                    * memory))  # fmt: skip
        layer = self.decoder.num_layers
        enc_outputs_class = self.bbox_head.cls_branches[layer](output_memory)
        enc_coords_unact = self.bbox_head.reg_branches[layer](output_memory) + anchors
        if enc_outputs_class.size(1) < self.num_queries:
            raise ValueError(
                f"RTDETR: the levels have {enc_outputs_class.size(1)} cells, fewer than "
                f"num_queries={self.num_queries}; use larger images or fewer queries"
            )
        topk = torch.topk(enc_outputs_class.max(-1)[0], k=self.num_queries, dim=1)[1]
        reference_unact = torch.gather(enc_coords_unact, 1, topk[..., None].expand(-1, -1, 4))
        topk_score = torch.gather(
            enc_outputs_class, 1, topk[..., None].expand(-1, -1, enc_outputs_class.size(-1))
        )
        topk_coords = reference_unact.sigmoid()
        if self.query_embedding is not None:
            query = self.query_embedding.weight[None].expand(batch, -1, -1)
        else:
            query = torch.gather(
                output_memory, 1, topk[..., None].expand(-1, -1, output_memory.size(-1))
            ).detach()
        dn_mask = dn_meta = None
        if self.training and self.dn_query_generator is not None:
            if data_samples is None:
                raise ValueError("RTDETR: training needs the data samples' gts (denoising)")
            gts, _, metas = unpack_gt_instances(data_samples)
            frames = frame_factors(metas, torch.float32, memory.device)
            denoising = self.dn_query_generator(gts, metas, frames)
            if denoising is not None:
                dn_label_query, dn_bbox_query, dn_mask, dn_meta = denoising
                query = torch.cat([dn_label_query.to(query.dtype), query], 1)
                reference_unact = torch.cat([dn_bbox_query.to(reference_unact.dtype),
                                             reference_unact], 1)  # fmt: skip
        decoder_inputs = dict(query=query, memory=memory,
                              reference_points=reference_unact.detach().sigmoid(),
                              dn_mask=dn_mask)  # fmt: skip
        head_inputs = {}
        if self.training:
            head_inputs = dict(enc_outputs_class=topk_score, enc_outputs_coord=topk_coords,
                               dn_meta=dn_meta)  # fmt: skip
        return decoder_inputs, head_inputs

    def forward_decoder(self, query, memory, reference_points, spatial_shapes,
                        level_start_index, spatial_shapes_list, dn_mask=None):  # fmt: skip
        """The decoder with the head's box branches: every layer's (L, B, D + Q, C) output
        and its L + 1 boxes."""
        hidden_states, references = self.decoder(
            query, memory, dn_mask, reference_points, spatial_shapes, level_start_index,
            spatial_shapes_list, reg_branches=self.bbox_head.reg_branches,
        )  # fmt: skip
        if self.training and self.dn_query_generator is not None and dn_mask is None:
            # no gts in the batch: no denoising query; keep the label embedding in the graph
            # (distributed training expects every parameter to get a gradient)
            weight = self.dn_query_generator.label_embedding.weight
            hidden_states = hidden_states + weight[0, 0] * 0.0
        return dict(hidden_states=hidden_states, references=references)

    # ------------------------------------------------------------------ export
    def export_spec(self):
        """``dets``, ``labels``; the coarsest stride: the backbone's last level's, doubled
        for each extra level of ``decoder_input_proj``."""
        strides = getattr(self.backbone, "out_strides", None) or [32]
        extra = self.decoder_input_proj.num_outs - len(self.decoder_input_proj.in_channels)
        return ExportSpec(output_names=("dets", "labels"),
                          coarsest_stride=int(max(strides)) * 2 ** max(extra, 0))  # fmt: skip
