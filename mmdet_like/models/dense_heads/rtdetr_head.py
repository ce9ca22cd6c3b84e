"""RT-DETR's head (Zhao et al. 2024): DINO's head (one classifier and one 3-layer box MLP
per decoder layer, a pair more for the encoder's query selection, denoising losses)
whose classifier is trained by the varifocal loss towards each matched query's IoU
(IoU-aware query selection: the encoder's top-k cells are picked by scores trained the same
way).

Losses (mmdetection's names): ``loss_cls`` (varifocal), ``loss_bbox`` (L1), ``loss_iou``
(GIoU) of the last decoder layer, ``d{i}.loss_*`` of layer ``i``, ``enc_loss_*`` of the
encoder's selected cells, ``dn_loss_*`` / ``d{i}.dn_loss_*`` of the denoising queries; each
averaged by the batch's matched queries (the gts; for the denoising ones, the gts times the
groups).
"""

import torch

from mmdet_like.models.dense_heads.detr_head import DETR_LOSS_BBOX, DETR_LOSS_IOU, image_factors
from mmdet_like.models.dense_heads.dino_head import DINOHead
from mmdet_like.registry import HEADS
from mmdet_like.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps

RTDETR_LOSS_CLS = dict(type="VarifocalLoss", use_sigmoid=True, alpha=0.75, gamma=2.0,
                       iou_weighted=True, loss_weight=1.0)  # fmt: skip
RTDETR_MATCH_COSTS = [
    dict(type="FocalLossCost", weight=2.0, alpha=0.25, gamma=2.0, eps=1e-8),
    dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
    dict(type="IoUCost", iou_mode="giou", weight=2.0),
]


def frame_factors(img_metas, dtype, device):
    """(B, 4) ``(w, h, w, h)`` of each meta's ``batch_input_shape`` (the padded batch, which
    RT-DETR's boxes are relative to: it has no padding mask), else of its ``img_shape``."""
    frames = [dict(img_shape=meta["batch_input_shape"]) if "batch_input_shape" in meta
              else meta for meta in img_metas]  # fmt: skip
    return image_factors(frames, dtype, device)


@HEADS.register()
class RTDETRHead(DINOHead):
    """:class:`DINOHead` with the varifocal classification loss and the decoder's boxes.

    Args:
        num_classes, embed_dims: as :class:`DINOHead`.
        loss_cls: ``VarifocalLoss`` (alpha 0.75, gamma 2, weight 1), given each matched
            query's ``(class, IoU)`` (the IoU of its detached box with its gt).
        loss_bbox, loss_iou: L1 (5), GIoU (2).
        train_cfg: ``assigner`` (default: ``HungarianAssigner`` with focal cost 2 (alpha
            0.25, gamma 2, eps 1e-8), L1 5, GIoU 2: the authors').
        test_cfg: ``max_per_img`` (the best (query, class) pairs: 300), ``score_thr``,
            ``clip_bboxes``.
        num_pred_layer, share_pred_layer, as_two_stage: set by ``RTDETR`` (a branch pair
            per decoder layer and one for the encoder, not shared).

    ``forward(hidden_states, references)``: (L, B, Q, C) decoder outputs and the decoder's
    L + 1 (B, Q, 4) boxes (the initial ones, then each layer's) -> (L, B, Q, num_classes)
    logits and the (L, B, Q, 4) boxes of each layer (the decoder computed them with the box
    branches already). Boxes are normalised by the padded batch (``batch_input_shape``,
    which ``RTDETR`` sets), as RT-DETR has no padding mask.
    """

    def __init__(self, num_classes, embed_dims=256, num_reg_fcs=2, loss_cls=RTDETR_LOSS_CLS,
                 loss_bbox=DETR_LOSS_BBOX, loss_iou=DETR_LOSS_IOU, train_cfg=None,
                 test_cfg=None, share_pred_layer=False, num_pred_layer=7, as_two_stage=True,
                 share_cls_layer=None):  # fmt: skip
        train_cfg = dict(train_cfg or {})
        train_cfg.setdefault(
            "assigner", dict(type="HungarianAssigner", match_costs=RTDETR_MATCH_COSTS)
        )
        test_cfg = dict(dict(max_per_img=300), **(test_cfg or {}))
        super().__init__(num_classes, embed_dims, num_reg_fcs, loss_cls, loss_bbox, loss_iou,
                         train_cfg, test_cfg, share_pred_layer, num_pred_layer, as_two_stage,
                         share_cls_layer)  # fmt: skip

    def box_factors(self, img_metas, dtype, device):
        return frame_factors(img_metas, dtype, device)

    def forward(self, hidden_states, references):
        """(L, B, Q, C) decoder outputs and L + 1 boxes -> (L, B, Q, num_classes) logits
        and (L, B, Q, 4) boxes."""
        num_layers = hidden_states.size(0)
        logits = [self.cls_branches[layer](hidden_states[layer]) for layer in range(num_layers)]
        return torch.stack(logits), torch.stack(list(references[1 : num_layers + 1]))

    def loss_of_targets(self, cls_scores, bbox_preds, targets):
        """One layer's losses: the varifocal loss of every (query, class) logit, the
        matched queries' target their class at the IoU of their (detached) box with their
        gt, averaged by the matched queries; L1 and GIoU of :meth:`box_losses`."""
        batch, num_queries = cls_scores.shape[:2]
        pos_preds = bbox_preds[targets.pos_batch_inds, targets.pos_query_inds].detach()
        ious = bbox_overlaps(bbox_cxcywh_to_xyxy(pos_preds) * targets.pos_factors,
                             targets.pos_gt_bboxes, is_aligned=True)  # fmt: skip
        scores = cls_scores.new_zeros((batch, num_queries))
        scores[targets.pos_batch_inds, targets.pos_query_inds] = ious.to(scores.dtype)
        loss_cls = self.loss_cls(
            cls_scores.reshape(-1, self.cls_out_channels),
            (targets.labels.reshape(-1), scores.reshape(-1)),
            targets.label_weights.reshape(-1), avg_factor=max(targets.num_pos, 1),
        )  # fmt: skip
        return dict(loss_cls=loss_cls, **self.box_losses(bbox_preds, targets))
