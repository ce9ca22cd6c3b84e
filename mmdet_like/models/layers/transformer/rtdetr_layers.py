"""RT-DETR's transformer parts (Zhao et al. 2024, "DETRs Beat YOLOs on Real-time Object
Detection"): the 2-D sine-cosine positions of its encoder (AIFI), the decoder whose query
positions are an MLP of each layer's reference box (:class:`RTDETRTransformerDecoder`),
and its contrastive denoising queries (:class:`RTDETRCdnQueryGenerator`).

Parameter names follow mmdetection's DINO where the parts agree (``layers.{i}.self_attn``,
``cross_attn``, ``ffn``, ``norms``; ``label_embedding``) and the authors' elsewhere
(``query_pos_head.layers.{0,1}``).
"""

import torch
from torch import nn

from mmdet_like.models.layers.transformer.deformable_layers import (
    DeformableDetrTransformerDecoder,
    inverse_sigmoid,
)
from mmdet_like.models.layers.transformer.dino_layers import MLP, CdnQueryGenerator
from mmdet_like.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh


def sincos_position_embedding(height, width, embed_dims, temperature=10000.0, device=None,
                              dtype=torch.float32):  # fmt: skip
    """(h * w, embed_dims) fixed positions of an ``height`` x ``width`` map flattened row by
    row: ``[sin(y w_k), cos(y w_k), sin(x w_k), cos(x w_k)]`` with ``w_k = temperature **
    (-k / (embed_dims / 4))``, ``x``, ``y`` the cell's column and row (integers), computed in
    float64 (transformers'; the authors' float32 differs by rounding) and cast to ``dtype``.

    transformers' form. The authors' code builds the grid in ``(w, h)`` order, which on a
    square map gives these values and on a non-square one assigns them to other cells; their
    models train and test on square inputs (640 x 640)."""
    if embed_dims % 4:
        raise ValueError(
            f"sincos_position_embedding: embed_dims {embed_dims} must be divisible by 4"
        )
    work = torch.float64 if device is None or torch.device(device).type != "mps" else dtype
    quarter = embed_dims // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=work, device=device) / quarter)
    grid_y, grid_x = torch.meshgrid(torch.arange(height, dtype=work, device=device),
                                    torch.arange(width, dtype=work, device=device),
                                    indexing="ij")  # fmt: skip
    out_y = grid_y.flatten()[:, None] * omega[None]
    out_x = grid_x.flatten()[:, None] * omega[None]
    return torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], 1).to(dtype)


class RTDETRTransformerDecoder(DeformableDetrTransformerDecoder):
    """Deformable decoder layers (self-attention, deformable cross-attention over the
    levels, FFN, each post-norm) whose query positions are ``query_pos_head`` (a 2-layer
    MLP, 4 -> 2C -> C) of each layer's reference box; every layer refines the boxes with
    the head's box branch.

    Args:
        num_layers, layer_cfg, return_intermediate: as
            :class:`DeformableDetrTransformerDecoder` (``cross_attn_cfg.num_points`` may
            be a per-level list: RT-DETRv2).
        look_forward_twice: layer ``i``'s returned box is its branch's offset added to the
            previous layer's box undetached, so its loss also trains layer ``i - 1``'s box
            branch (the authors' RT-DETR and DINO); ``False``: added to the detached box
            (transformers' ``RTDetrDecoder``). The boxes' values are the same.

    No final norm (the layers are post-norm) and no padding mask (RT-DETR has none).
    """

    def __init__(self, num_layers, layer_cfg, return_intermediate=True, look_forward_twice=True):
        super().__init__(num_layers, layer_cfg, return_intermediate)
        self.look_forward_twice = bool(look_forward_twice)
        dims = self.embed_dims
        self.query_pos_head = MLP(4, dims * 2, dims, 2)

    def forward(self, query, value, self_attn_mask, reference_points, spatial_shapes,
                level_start_index, spatial_shapes_list, reg_branches):  # fmt: skip
        """(B, Q, C) queries, (B, V, C) memory, (Q, Q) bool self-attention mask (True: not
        allowed) or ``None``, (B, Q, 4) reference boxes ``(cx, cy, w, h)`` in [0, 1] of the
        input (detached), the level shapes, and the head's ``reg_branches`` (one per layer).

        Returns:
            ``(hidden_states, references)``: (num_layers, B, Q, C) every layer's output and
            num_layers + 1 (B, Q, 4) boxes: the initial ones, then each layer's refined
            ones (``sigmoid(branch(output) + inverse_sigmoid(previous box))``).
        """
        if reference_points.size(-1) != 4:
            raise ValueError("RTDETRTransformerDecoder: reference_points must be (B, Q, 4) boxes")
        outputs, references = [], [reference_points]
        for index, layer in enumerate(self.layers):
            query_pos = self.query_pos_head(reference_points)
            query = layer(query, value, query_pos=query_pos, key_padding_mask=None,
                          self_attn_mask=self_attn_mask,
                          reference_points=reference_points[:, :, None],
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          spatial_shapes_list=spatial_shapes_list)  # fmt: skip
            delta = reg_branches[index](query)
            previous = references[-1] if self.look_forward_twice else reference_points
            boxes = (delta + inverse_sigmoid(previous)).sigmoid()
            reference_points = boxes.detach()
            outputs.append(query)
            references.append(boxes)
        return torch.stack(outputs), references


class RTDETRCdnQueryGenerator(CdnQueryGenerator):
    """RT-DETR's contrastive denoising queries (the authors' and transformers'
    ``get_contrastive_denoising_training_group``): ``G = max(num_dn_queries // m, 1)``
    groups for the batch's largest gt count ``m``, each ``m`` positive slots (gt ``j`` at
    slot ``j``) then ``m`` negative ones, as :class:`CdnQueryGenerator` lays them out.

    Where it differs from :class:`CdnQueryGenerator` (DINO's, mmdetection's):

    - the noise is drawn per slot of the padded (B, 2 m G) layout, in the authors' order
      and with their operations: ``rand`` (which labels flip), ``randint`` (their new
      class), ``randint`` (the corners' signs), ``rand`` (the corners' magnitudes), so
      that the same generator state draws the same queries as transformers / the authors'
      code (DINO's draws per gt, with ``floor(rand * C)`` for the class);
    - an image's empty slots carry the padding class ``num_classes`` (the embedding's last
      row, ``padding_idx``: it takes no gradient) and the all-zero box, whose inverse
      sigmoid is ``log(1e-5)`` on every coordinate (DINO's: zero content and zero
      logits, a box at the centre);
    - the boxes' inverse sigmoid uses eps 1e-5 (DINO's 1e-3);
    - a batch without gts has no denoising queries at all (``forward`` returns ``None``).

    Args:
        num_classes, embed_dims, num_matching_queries, label_noise_scale,
        box_noise_scale: as :class:`CdnQueryGenerator`.
        num_dn_queries: about that many denoising queries (RT-DETR's ``num_denoising``,
            100).

    Parameters: ``label_embedding`` (num_classes + 1, embed_dims), the last row the
    padding class's. Randomness: ``self.generator`` when set, else the global RNG (as the
    authors' ``torch.rand_like``).
    """

    def __init__(self, num_classes, embed_dims, num_matching_queries, label_noise_scale=0.5,
                 box_noise_scale=1.0, num_dn_queries=100):  # fmt: skip
        if box_noise_scale < 0 or label_noise_scale < 0:
            raise ValueError(
                "RTDETRCdnQueryGenerator: label_noise_scale and box_noise_scale must not be "
                f"negative, got {label_noise_scale} and {box_noise_scale}"
            )
        super().__init__(num_classes, embed_dims, num_matching_queries, label_noise_scale,
                         box_noise_scale=max(box_noise_scale, 1e-12),
                         group_cfg=dict(dynamic=True, num_dn_queries=num_dn_queries))  # fmt: skip
        self.box_noise_scale = float(box_noise_scale)
        self.label_embedding = nn.Embedding(self.num_classes + 1, self.embed_dims,
                                            padding_idx=self.num_classes)  # fmt: skip

    def forward(self, batch_gt_instances, batch_img_metas, frames=None):
        """B images' gts (``bboxes`` (n_i, 4) ``[x1, y1, x2, y2]`` in the input, ``labels``)
        and metas (``img_shape``); ``frames``: (B, 4) ``(w, h, w, h)`` the boxes are
        normalised by (default: each meta's ``img_shape``) ->

        - ``dn_label_query`` (B, D, embed_dims), ``dn_bbox_query`` (B, D, 4) noised
          ``[cx, cy, w, h]`` in inverse-sigmoid space;
        - ``attn_mask`` (D + M, D + M) bool, True where a query may not attend (a group
          sees itself and the matching queries; those see only themselves);
        - ``dn_meta``: ``num_denoising_queries`` D (``2 m G``), ``num_denoising_groups`` G;

        or ``None`` when the batch has no gt.
        """
        weight = self.label_embedding.weight
        device = weight.device
        counts = [len(gt.labels) for gt in batch_gt_instances]
        max_count = max(counts) if counts else 0
        if max_count == 0:
            return None
        num_groups = self.get_num_groups(max_count)
        batch = len(counts)
        if frames is None:
            frames = []
            for i, meta in enumerate(batch_img_metas):
                if "img_shape" not in meta:
                    raise ValueError(
                        f"RTDETRCdnQueryGenerator: image {i}'s meta has no img_shape (h, w)"
                    )
                height, width = meta["img_shape"][:2]
                frames.append([width, height, width, height])
            frames = torch.tensor(frames, dtype=torch.float32, device=device)
        labels = torch.full((batch, max_count), self.num_classes, dtype=torch.int32,
                            device=device)  # fmt: skip
        boxes = torch.zeros((batch, max_count, 4), device=device)
        real = torch.zeros((batch, max_count), dtype=torch.bool, device=device)
        for i, (gt, count) in enumerate(zip(batch_gt_instances, counts)):
            if count:
                labels[i, :count] = gt.labels.to(device=device, dtype=torch.int32)
                normed = gt.bboxes.to(device=device, dtype=torch.float32) / frames[i].float()
                boxes[i, :count] = bbox_xyxy_to_cxcywh(normed)
                real[i, :count] = True
        repeats = 2 * num_groups
        labels = labels.repeat(1, repeats)
        boxes = boxes.repeat(1, repeats, 1)
        real = real.repeat(1, repeats)
        negative = torch.zeros((batch, 2 * max_count, 1), device=device)
        negative[:, max_count:] = 1.0
        negative = negative.repeat(1, num_groups, 1)
        if self.label_noise_scale > 0:
            flip = self._rand(labels.shape, device) < self.label_noise_scale * 0.5
            new_labels = torch.randint(0, self.num_classes, labels.shape, dtype=labels.dtype,
                                       generator=self.generator, device=device)  # fmt: skip
            labels = torch.where(flip & real, new_labels, labels)
        if self.box_noise_scale > 0:
            corners = bbox_cxcywh_to_xyxy(boxes)
            diff = (boxes[..., 2:] * 0.5).repeat(1, 1, 2) * self.box_noise_scale
            sign = torch.randint(0, 2, boxes.shape, dtype=boxes.dtype, generator=self.generator,
                                 device=device) * 2.0 - 1.0  # fmt: skip
            part = self._rand(boxes.shape, device)
            part = (part + 1.0) * negative + part * (1 - negative)
            corners = (corners + part * sign * diff).clamp(min=0.0, max=1.0)
            boxes = bbox_xyxy_to_cxcywh(corners)
        bbox_query = inverse_sigmoid(boxes)
        label_query = self.label_embedding(labels.long())
        attn_mask = self.attention_mask(max_count, num_groups, device)
        dn_meta = dict(num_denoising_queries=2 * max_count * num_groups,
                       num_denoising_groups=num_groups)  # fmt: skip
        return label_query, bbox_query, attn_mask, dn_meta
