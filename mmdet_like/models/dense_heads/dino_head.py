"""DINO's head (Zhang et al. 2022): Deformable DETR's refining, two-stage head whose decoder
outputs in training start with the denoising queries (their targets known: query ``j`` of
a group's positives reconstructs gt ``j``, its negative is background), then the matching
queries (the Hungarian losses of :class:`DETRHead`).

Losses (mmdetection's names): ``loss_*`` / ``d{i}.loss_*`` of the matching queries,
``enc_loss_*`` of the encoder's top-k proposals (against the gts with their classes, unlike
Deformable DETR's class-agnostic proposals), ``dn_loss_*`` / ``d{i}.dn_loss_*`` of the
denoising queries.
"""

import torch

from mmdet_like.models.dense_heads.deformable_detr_head import DeformableDETRHead
from mmdet_like.models.dense_heads.detr_head import DETRHead, QueryTargets
from mmdet_like.models.layers.transformer.dino_layers import denoising_slots
from mmdet_like.registry import HEADS
from mmdet_like.structures.instances import unpack_gt_instances


@HEADS.register()
class DINOHead(DeformableDETRHead):
    """:class:`DeformableDETRHead` (one branch pair per decoder layer plus the encoder's;
    built by ``DINO`` with refinement and two-stage) with the denoising losses.

    ``dn_meta`` (from ``CdnQueryGenerator``): ``num_denoising_queries`` D (the first D
    queries of every layer's outputs), ``num_denoising_groups`` G; ``None`` without
    denoising (inference, or denoising off)."""

    def forward_train(self, hidden_states, references, data_samples, enc_outputs_class=None,
                      enc_outputs_coord=None, dn_meta=None):  # fmt: skip
        """The losses of :meth:`loss` from the decoder's outputs (L, B, D + Q, C), the
        encoder's top-k proposals' (B, Q, num_classes) logits and (B, Q, 4) boxes, and
        ``dn_meta``."""
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(data_samples)
        cls_scores, bbox_preds = self(hidden_states, references)
        return self.loss(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
                         enc_outputs_class, enc_outputs_coord, dn_meta)  # fmt: skip

    @staticmethod
    def split_outputs(all_layers_cls_scores, all_layers_bbox_preds, dn_meta):
        """(L, B, D + Q, ·) outputs -> ``(matching_cls, matching_boxes, dn_cls, dn_boxes)``,
        the denoising ones ``None`` without ``dn_meta``."""
        if dn_meta is None:
            return all_layers_cls_scores, all_layers_bbox_preds, None, None
        num_dn = int(dn_meta["num_denoising_queries"])
        cls, boxes = all_layers_cls_scores, all_layers_bbox_preds
        return cls[:, :, num_dn:], boxes[:, :, num_dn:], cls[:, :, :num_dn], boxes[:, :, :num_dn]

    def loss(self, all_layers_cls_scores, all_layers_bbox_preds, batch_gt_instances,
             batch_img_metas, enc_cls_scores=None, enc_bbox_preds=None,
             dn_meta=None):  # fmt: skip
        """The matching queries' :meth:`DETRHead.loss`; the encoder's proposals'
        ``enc_loss_*`` (one Hungarian assignment to the gts, with their classes); the
        denoising queries' ``dn_loss_*`` (last layer) and ``d{i}.dn_loss_*``."""
        match_cls, match_boxes, dn_cls, dn_boxes = self.split_outputs(
            all_layers_cls_scores, all_layers_bbox_preds, dn_meta
        )
        losses = DETRHead.loss(self, match_cls, match_boxes, batch_gt_instances, batch_img_metas)
        if enc_cls_scores is not None:
            enc = self.loss_by_feat_single(enc_cls_scores, enc_bbox_preds, batch_gt_instances,
                                           batch_img_metas)  # fmt: skip
            losses.update({f"enc_{name}": value for name, value in enc.items()})
        if dn_cls is not None:
            targets = self.get_dn_targets(dn_cls, dn_boxes, batch_gt_instances, batch_img_metas,
                                          dn_meta)  # fmt: skip
            num_layers = dn_cls.size(0)
            for layer in range(num_layers):
                terms = self.loss_of_targets(dn_cls[layer], dn_boxes[layer], targets)
                prefix = "" if layer == num_layers - 1 else f"d{layer}."
                losses.update({f"{prefix}dn_{name}": value for name, value in terms.items()})
        return losses

    def get_dn_targets(self, dn_cls_scores, dn_bbox_preds, batch_gt_instances, batch_img_metas,
                       dn_meta):  # fmt: skip
        """The denoising queries' :class:`QueryTargets` (the same for every layer): gt
        ``j`` of image ``b`` at query ``2 m g + j`` of group ``g`` (its class and box), every
        other query (negatives, empty slots) background with weight 1.

        ``num_neg`` counts the negative queries (G N, as mmdetection; it weighs nothing
        with a sigmoid classifier)."""
        _, batch, num_dn = dn_cls_scores.shape[:3]
        device = dn_cls_scores.device
        num_groups = int(dn_meta["num_denoising_groups"])
        counts = [len(gt.labels) for gt in batch_gt_instances]
        batch_inds, gt_inds, query_inds, max_count = denoising_slots(counts, num_groups, device)
        if 2 * max_count * num_groups != num_dn:
            raise ValueError(
                f"DINOHead: dn_meta gives {num_dn} denoising queries, the gts {max_count} a "
                f"image at most and {num_groups} groups make {2 * max_count * num_groups}"
            )
        factors = self.box_factors(batch_img_metas, dn_bbox_preds.dtype, device)
        all_labels = torch.cat([gt.labels.to(device).long() for gt in batch_gt_instances])
        all_bboxes = torch.cat([gt.bboxes.to(device=device, dtype=dn_bbox_preds.dtype)
                                for gt in batch_gt_instances])  # fmt: skip
        labels = torch.full((batch, num_dn), self.num_classes, dtype=torch.long, device=device)
        labels[batch_inds, query_inds] = all_labels.repeat(num_groups)
        num_pos = query_inds.numel()
        return QueryTargets(
            labels=labels,
            label_weights=dn_cls_scores.new_ones((batch, num_dn)),
            pos_batch_inds=batch_inds,
            pos_query_inds=query_inds,
            pos_gt_inds=gt_inds,
            pos_gt_bboxes=all_bboxes.repeat(num_groups, 1),
            pos_factors=factors[batch_inds],
            num_pos=num_pos,
            num_neg=num_pos,
        )
