"""DINO's transformer parts (Zhang et al. 2022): the contrastive denoising query generator
(:class:`CdnQueryGenerator`) and the decoder whose query positions come from the sine
embedding of each layer's reference box, refined "looking forward twice"
(:class:`DinoTransformerDecoder`).

mmdetection 3's ``CdnQueryGenerator`` / ``DinoTransformerDecoder`` in behaviour and
parameter names (``label_embedding``; ``ref_point_head.layers.{0,1}``, ``norm``).

Denoising queries of a batch (``m`` the batch's largest gt count, ``G`` groups) are laid out
group after group, each group ``2 m`` queries: ``m`` positive slots (gt ``j`` of the image at
slot ``j``) then ``m`` negative ones (gt ``j`` at slot ``m + j``); the slots of an image with
fewer gts stay empty (zero content, reference box at the centre, background targets).
"""

import math

import torch
from torch import nn

from mmdet_like.models.layers.transformer.deformable_layers import (
    DeformableDetrTransformerDecoder,
    inverse_sigmoid,
)
from mmdet_like.structures.bbox import bbox_xyxy_to_cxcywh


def denoising_slots(counts, num_groups, device):
    """Where each gt's positive queries sit in the (B, 2 m G) denoising layout.

    Args:
        counts: B host ints, each image's gt count (``m`` their maximum).
        num_groups: G.

    Returns:
        ``(batch_inds, gt_inds, pos_query_inds, max_count)``: (G N,) image, index among its
        image's gts and positive query of each of the N gts of the batch (concatenated
        image after image) in each group (group-major); the negative query is
        ``pos_query_inds + max_count``.
    """
    counts_t = torch.as_tensor(counts, dtype=torch.long, device=device)
    total = int(sum(counts))
    max_count = max(counts) if len(counts) else 0
    batch_inds = torch.repeat_interleave(
        torch.arange(len(counts), device=device), counts_t, output_size=total
    )  # the size given: no device sync
    starts = torch.cumsum(counts_t, 0) - counts_t
    gt_inds = torch.arange(total, device=device) - starts[batch_inds]
    group_offsets = torch.arange(num_groups, device=device)[:, None] * (2 * max_count)
    pos_query_inds = (group_offsets + gt_inds[None]).flatten()
    return batch_inds.repeat(num_groups), gt_inds.repeat(num_groups), pos_query_inds, max_count


class CdnQueryGenerator(nn.Module):
    """Contrastive denoising queries: per group, each gt's noised copy as a positive query
    (to be reconstructed) and a farther-noised copy as a negative one (to be called
    background).

    Args:
        num_classes: object classes (the label embedding's rows).
        embed_dims: the queries' width.
        num_matching_queries: the detector's own queries, after the denoising ones in the
            decoder (for the attention mask).
        label_noise_scale: a gt label is redrawn uniformly among the classes with
            probability ``label_noise_scale / 2`` (it may draw itself).
        box_noise_scale: each corner coordinate of a positive query moves by
            ``u * box_noise_scale * side / 2`` with ``|u| < 1``; a negative's by
            ``1 <= |u| < 2`` (``side`` the gt's width for x, height for y), then clamped to
            the image.
        group_cfg: ``dynamic=True`` with ``num_dn_queries`` (about that many denoising
            queries: ``num_dn_queries // m`` groups, at least 1, for the batch's largest gt
            count ``m``), or ``dynamic=False`` with a fixed ``num_groups``.

        noise_draws: how the noise is drawn (the same distributions either way):
            ``"sync_free"`` (default): four draws of fixed sizes (the relabelling
            probability, a new label for every copy, the signs and the magnitudes of the
            corner moves), no host sync; ``"mmdetection"``: mmdetection 3's calls in its
            order (``rand`` for the relabelling, ``randint`` of as many new labels as copies
            relabelled, which reads that count on the host, ``randint`` signs, ``rand``
            magnitudes), so that under the same seed of the same CPU generator the queries
            are mmdetection's draw for draw (tests/models/test_mmdet_dino_fixture.py).

    Randomness comes from ``self.generator`` (a ``torch.Generator`` on the gts' device)
    when set, else from the global RNG.
    """

    NOISE_DRAWS = ("sync_free", "mmdetection")

    def __init__(self, num_classes, embed_dims, num_matching_queries, label_noise_scale=0.5,
                 box_noise_scale=1.0, group_cfg=None, noise_draws="sync_free"):  # fmt: skip
        super().__init__()
        if noise_draws not in self.NOISE_DRAWS:
            raise ValueError(
                f"dn_cfg.noise_draws={noise_draws!r}: one of {', '.join(self.NOISE_DRAWS)}"
            )
        self.noise_draws = noise_draws
        self.num_classes = int(num_classes)
        self.embed_dims = int(embed_dims)
        self.num_matching_queries = int(num_matching_queries)
        self.label_noise_scale = float(label_noise_scale)
        self.box_noise_scale = float(box_noise_scale)
        if self.box_noise_scale <= 0:
            raise ValueError(
                f"CdnQueryGenerator: box_noise_scale must be positive, got {box_noise_scale}"
            )
        group_cfg = dict(group_cfg or dict(dynamic=True, num_dn_queries=100))
        unknown = sorted(set(group_cfg) - {"dynamic", "num_groups", "num_dn_queries"})
        if unknown:
            raise ValueError(
                f"dn_cfg.group_cfg: unknown key(s) {unknown}; it takes dynamic, num_groups, "
                "num_dn_queries"
            )
        self.dynamic = bool(group_cfg.get("dynamic", True))
        if self.dynamic:
            if group_cfg.get("num_dn_queries") is None or group_cfg.get("num_groups"):
                raise ValueError(
                    "dn_cfg.group_cfg: dynamic=True takes num_dn_queries (e.g. 100) and no "
                    "num_groups"
                )
            self.num_dn_queries = int(group_cfg["num_dn_queries"])
            if self.num_dn_queries < 1:
                raise ValueError("dn_cfg.group_cfg.num_dn_queries must be at least 1")
        else:
            if not group_cfg.get("num_groups") or int(group_cfg["num_groups"]) < 1:
                raise ValueError("dn_cfg.group_cfg: dynamic=False takes num_groups (at least 1)")
            self.num_groups = int(group_cfg["num_groups"])
        self.label_embedding = nn.Embedding(self.num_classes, self.embed_dims)
        self.generator = None

    def get_num_groups(self, max_count):
        """Groups for a batch whose largest image has ``max_count`` gts."""
        if not self.dynamic:
            return self.num_groups
        return max(self.num_dn_queries // max_count, 1) if max_count > 0 else 1

    def _rand(self, shape, device):
        return torch.rand(shape, generator=self.generator, device=device)

    def draw_noise(self, labels, box_shape, device):
        """The noise of the (K,) copies' labels and of their (..., 4) corners, K = 2 G N.

        Returns:
            ``(noisy_labels, sign, magnitude)``: (K,) labels, each redrawn with probability
            ``label_noise_scale / 2``; ``box_shape`` signs (+-1.0) and magnitudes in
            [0, 1) of the corner moves (drawn in the order of :attr:`noise_draws`).
        """
        flip = self._rand(labels.shape, device) < self.label_noise_scale * 0.5
        if self.noise_draws == "mmdetection":
            chosen = flip.nonzero().view(-1)  # reads the count on the host
            new_labels = torch.randint(0, self.num_classes, chosen.shape, device=device,
                                       generator=self.generator)  # fmt: skip
            noisy_labels = labels.scatter(0, chosen, new_labels)
            sign = torch.randint(0, 2, box_shape, generator=self.generator, device=device,
                                 dtype=torch.float32) * 2.0 - 1.0  # fmt: skip
        else:
            new_labels = torch.floor(self._rand(labels.shape, device) * self.num_classes).long()
            noisy_labels = torch.where(flip, new_labels.clamp(max=self.num_classes - 1), labels)
            sign = torch.where(self._rand(box_shape, device) < 0.5, -1.0, 1.0)
        return noisy_labels, sign, self._rand(box_shape, device)

    def forward(self, batch_gt_instances, batch_img_metas):
        """B images' gts (``bboxes`` (n_i, 4) ``[x1, y1, x2, y2]`` in the input image,
        ``labels`` (n_i,)) and metas (``img_shape``) ->

        - ``dn_label_query`` (B, D, embed_dims): noised labels' embeddings;
        - ``dn_bbox_query`` (B, D, 4): noised boxes, normalised ``[cx, cy, w, h]`` in
          inverse-sigmoid space (eps 1e-3);
        - ``attn_mask`` (D + M, D + M) bool, True where a query may not attend: a
          denoising group sees itself and the matching queries, the M matching queries
          see only themselves;
        - ``dn_meta``: ``num_denoising_queries`` D (``2 m G``), ``num_denoising_groups``
          G.
        """
        device = self.label_embedding.weight.device
        counts = [len(gt.labels) for gt in batch_gt_instances]
        num_groups = self.get_num_groups(max(counts) if counts else 0)
        batch_inds, _, pos_query, max_count = denoising_slots(counts, num_groups, device)
        batch = len(counts)
        num_dn = 2 * max_count * num_groups
        factors = []
        for i, meta in enumerate(batch_img_metas):
            if "img_shape" not in meta:
                raise ValueError(f"CdnQueryGenerator: image {i}'s meta has no img_shape (h, w)")
            height, width = meta["img_shape"][:2]
            factors.append([width, height, width, height])
        factors = torch.tensor(factors, dtype=torch.float32, device=device)
        labels = torch.cat([gt.labels.to(device).long() for gt in batch_gt_instances])
        boxes = torch.cat([gt.bboxes.to(device=device, dtype=torch.float32)
                           for gt in batch_gt_instances])  # fmt: skip
        boxes = boxes / factors[batch_inds[: len(labels)]]
        # every gt twice per group (positive, negative), group-major
        labels = labels.repeat(2 * num_groups)
        boxes = boxes.view(1, -1, 4).expand(2 * num_groups, -1, -1)
        noisy_labels, sign, magnitude = self.draw_noise(labels, boxes.shape, device)
        negative = (torch.arange(2 * num_groups, device=device) % 2 == 1).view(-1, 1, 1)
        magnitude = magnitude + negative.to(magnitude.dtype)  # positives [0, 1), negatives [1, 2)
        wh = bbox_xyxy_to_cxcywh(boxes)[..., 2:].repeat(1, 1, 2)
        noisy = boxes + sign * magnitude * wh * (self.box_noise_scale / 2)
        noisy = bbox_xyxy_to_cxcywh(noisy.clamp(min=0.0, max=1.0)).reshape(-1, 4)
        # place them: group g's positives at 2 m g + j, negatives m further
        pos_query = pos_query.view(num_groups, -1)
        query_inds = torch.stack([pos_query, pos_query + max_count], 1).flatten()
        image_inds = batch_inds.view(num_groups, -1).repeat_interleave(2, 0).flatten()
        label_query = self.label_embedding.weight.new_zeros((batch, num_dn, self.embed_dims))
        label_query = label_query.index_put(
            (image_inds, query_inds), self.label_embedding(noisy_labels)
        )
        bbox_query = torch.zeros((batch, num_dn, 4), device=device)
        bbox_query[image_inds, query_inds] = inverse_sigmoid(noisy, eps=1e-3)
        attn_mask = self.attention_mask(max_count, num_groups, device)
        dn_meta = dict(num_denoising_queries=num_dn, num_denoising_groups=num_groups)
        return label_query, bbox_query, attn_mask, dn_meta

    def attention_mask(self, max_count, num_groups, device):
        """(D + M, D + M) bool, True where query (row) may not attend to key (column)."""
        num_dn = 2 * max_count * num_groups
        total = num_dn + self.num_matching_queries
        group = torch.arange(total, device=device) // max(2 * max_count, 1)
        is_dn = torch.arange(total, device=device) < num_dn
        # denoising rows: other groups hidden; matching rows: every denoising query hidden
        return (is_dn[:, None] & is_dn[None] & (group[:, None] != group[None])) | (
            ~is_dn[:, None] & is_dn[None]
        )


def coordinate_to_encoding(coords, num_feats=128, temperature=10000, scale=2 * math.pi):
    """(..., 2) ``(x, y)`` or (..., 4) ``(cx, cy, w, h)`` in [0, 1] -> (..., 2 or 4 x
    num_feats) sine embedding, ``y`` first then ``x`` (then ``w``, ``h``), sines and cosines
    interleaved (mmdetection's ``coordinate_to_encoding``)."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = (coords.to(torch.float32) * scale)[..., None] / dim_t
    pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), -1).flatten(-2)
    order = [1, 0] if coords.size(-1) == 2 else [1, 0, 2, 3]
    return torch.cat([pos[..., i, :] for i in order], -1).to(coords.dtype)


class MLP(nn.Module):
    """Linear layers with ReLU between (mmdetection's ``MLP``: ``layers.{i}``)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class DinoTransformerDecoder(DeformableDetrTransformerDecoder):
    """Deformable decoder layers whose query positions are ``ref_point_head`` (a 2-layer MLP)
    of the sine embedding of each layer's reference box; a final ``norm`` on every layer's
    output for the head; box refinement looking forward twice.

    Args: as :class:`DeformableDetrTransformerDecoder`.
    """

    def __init__(self, num_layers, layer_cfg, return_intermediate=True, post_norm_cfg=None):
        super().__init__(num_layers, layer_cfg, return_intermediate)
        if post_norm_cfg is not None:
            raise ValueError("DinoTransformerDecoder: post_norm_cfg must be None (DINO's)")
        dims = self.embed_dims
        self.ref_point_head = MLP(dims * 2, dims, dims, 2)
        self.norm = nn.LayerNorm(dims)

    def forward(self, query, value, key_padding_mask, self_attn_mask, reference_points,
                spatial_shapes, level_start_index, valid_ratios, spatial_shapes_list,
                reg_branches):  # fmt: skip
        """(B, Q, C) queries, (B, V, C) memory and (B, V) padding mask (or ``None``),
        (Q, Q) bool self-attention mask (or ``None``), (B, Q, 4) reference boxes
        ``(cx, cy, w, h)`` in [0, 1] of the valid image, the level shapes, (B, levels, 2)
        valid ratios, the head's per-layer ``reg_branches``.

        Layer ``i``'s box branch moves the reference boxes: detached for layer ``i + 1``'s
        attention, undetached in the returned references, so layer ``i + 1``'s box loss
        reaches layer ``i``'s branch (look forward twice).

        Returns:
            ``(hidden_states, references)``: (num_layers, B, Q, C) every layer's normed
            output and num_layers + 1 (B, Q, 4) references (the initial ones, then each
            layer's refined boxes).
        """
        if reference_points.size(-1) != 4:
            raise ValueError("DinoTransformerDecoder: reference_points must be (B, Q, 4) boxes")
        outputs, references = [], [reference_points]
        scale = torch.cat([valid_ratios, valid_ratios], -1)[:, None]
        for index, layer in enumerate(self.layers):
            points = reference_points[:, :, None] * scale
            query_pos = self.ref_point_head(
                coordinate_to_encoding(points[:, :, 0], num_feats=self.embed_dims // 2)
            )
            query = layer(query, value, query_pos=query_pos, key_padding_mask=key_padding_mask,
                          self_attn_mask=self_attn_mask, reference_points=points,
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          spatial_shapes_list=spatial_shapes_list)  # fmt: skip
            new_points = (reg_branches[index](query)
                          + inverse_sigmoid(reference_points, eps=1e-3)).sigmoid()  # fmt: skip
            reference_points = new_points.detach()
            outputs.append(self.norm(query))
            references.append(new_points)
        return torch.stack(outputs), references
