"""Deformable DETR's head (Zhu et al. 2021): per decoder layer a linear classifier (sigmoid
focal loss, no no-object class) and a 3-layer box MLP predicting the box relative to the
layer's reference point (in inverse-sigmoid space); with two-stage proposals, one more pair
of branches scores the encoder's cells as class-agnostic proposals.

The assignment and the per-layer losses are :class:`DETRHead`'s (its
:meth:`~DETRHead.loss`, :meth:`~DETRHead.loss_by_feat_single`, :meth:`~DETRHead.get_bboxes`).
"""

import copy

import torch
from torch import nn

from mmdet_like.models.dense_heads.detr_head import DETR_LOSS_BBOX, DETR_LOSS_IOU, DETRHead
from mmdet_like.models.layers.transformer import inverse_sigmoid
from mmdet_like.registry import HEADS
from mmdet_like.structures.instance_data import InstanceData
from mmdet_like.structures.instances import unpack_gt_instances

DEFORMABLE_LOSS_CLS = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25,
                           loss_weight=2.0)  # fmt: skip
DEFORMABLE_MATCH_COSTS = [
    dict(type="FocalLossCost", weight=2.0),
    dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
    dict(type="IoUCost", iou_mode="giou", weight=2.0),
]


@HEADS.register()
class DeformableDETRHead(DETRHead):
    """``cls_branches.{i}`` (Linear) and ``reg_branches.{i}`` (Linear, ReLU, Linear, ReLU,
    Linear: mmdetection's names ``.0``, ``.2``, ``.4``) per prediction layer.

    Args:
        num_classes, embed_dims, loss_cls, loss_bbox, loss_iou, train_cfg, test_cfg: as
            :class:`DETRHead` (default: sigmoid focal loss, weight 2; the assigner's costs
            focal 2, L1 5, GIoU 2).
        share_pred_layer: one classifier and one box MLP for every layer (Deformable DETR
            without box refinement); else a copy per layer.
        num_pred_layer: prediction layers: the decoder's, plus one for the encoder's
            proposals with ``as_two_stage`` (set by ``DeformableDETR``).
        as_two_stage: the last pair of branches scores the encoder's proposals, trained by
            ``enc_loss_cls``, ``enc_loss_bbox``, ``enc_loss_iou`` (class-agnostic: every gt
            as class 0).
        share_cls_layer: overrides ``share_pred_layer`` for the classifiers alone (``None``:
            follow it). transformers 5's ``DeformableDetrForObjectDetection`` with
            ``with_box_refine`` and without ``two_stage`` ties its classifiers across layers
            while copying the box MLPs.

    ``forward(hidden_states, references)``: (L, B, Q, C) decoder outputs and L + 1
    reference points ((B, Q, 2) or (B, Q, 4), the initial ones then each layer's) ->
    (L, B, Q, num_classes) logits and (L, B, Q, 4) sigmoid ``[cx, cy, w, h]`` boxes.
    """

    def __init__(self, num_classes, embed_dims=256, num_reg_fcs=2, loss_cls=DEFORMABLE_LOSS_CLS,
                 loss_bbox=DETR_LOSS_BBOX, loss_iou=DETR_LOSS_IOU, train_cfg=None,
                 test_cfg=None, share_pred_layer=False, num_pred_layer=6, as_two_stage=False,
                 share_cls_layer=None):  # fmt: skip
        self.share_pred_layer = bool(share_pred_layer)
        self.share_cls_layer = (
            self.share_pred_layer if share_cls_layer is None else bool(share_cls_layer)
        )
        self.num_pred_layer = int(num_pred_layer)
        self.as_two_stage = bool(as_two_stage)
        train_cfg = dict(train_cfg or {})
        train_cfg.setdefault(
            "assigner", dict(type="HungarianAssigner", match_costs=DEFORMABLE_MATCH_COSTS)
        )
        super().__init__(num_classes, embed_dims, num_reg_fcs, loss_cls, loss_bbox, loss_iou,
                         train_cfg, test_cfg)  # fmt: skip
        if not self.use_sigmoid:
            raise ValueError(
                "DeformableDETRHead: loss_cls must be a sigmoid loss (FocalLoss with "
                "use_sigmoid=True); Deformable DETR has no no-object class"
            )

    def _init_layers(self):
        def branches(make, shared):
            if shared:
                module = make()
                return nn.ModuleList([module for _ in range(self.num_pred_layer)])
            module = make()
            return nn.ModuleList(copy.deepcopy(module) for _ in range(self.num_pred_layer))

        def reg_branch():
            dims = self.embed_dims
            return nn.Sequential(nn.Linear(dims, dims), nn.ReLU(), nn.Linear(dims, dims),
                                 nn.ReLU(), nn.Linear(dims, 4))  # fmt: skip

        self.cls_branches = branches(
            lambda: nn.Linear(self.embed_dims, self.cls_out_channels), self.share_cls_layer
        )
        self.reg_branches = branches(reg_branch, self.share_pred_layer)

    def init_weights(self):
        """Classifier biases at prior 0.01; the box MLPs' last layers zero, the first
        one's size biases at -2 (small initial boxes), back to 0 with two-stage proposals
        (mmdetection's)."""
        for module in self.cls_branches:
            nn.init.constant_(module.bias, -4.59511985013459)  # -log((1 - 0.01) / 0.01)
        for module in self.reg_branches:
            nn.init.zeros_(module[-1].weight)
            nn.init.zeros_(module[-1].bias)
        if not self.as_two_stage:
            nn.init.constant_(self.reg_branches[0][-1].bias[2:], -2.0)

    # ------------------------------------------------------------------ outputs
    def forward(self, hidden_states, references):
        """(L, B, Q, C) decoder outputs and L + 1 reference points -> (L, B, Q, num_classes)
        logits and (L, B, Q, 4) boxes (each layer's box: its MLP's output plus the inverse
        sigmoid of the reference point it started from, through a sigmoid)."""
        all_cls, all_boxes = [], []
        for layer in range(hidden_states.size(0)):
            states = hidden_states[layer]
            reference = inverse_sigmoid(references[layer])
            delta = self.reg_branches[layer](states)
            if reference.size(-1) == 4:
                coords = delta + reference
            else:
                coords = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            all_cls.append(self.cls_branches[layer](states))
            all_boxes.append(coords.sigmoid())
        return torch.stack(all_cls), torch.stack(all_boxes)

    # ------------------------------------------------------------------ training
    def forward_train(self, hidden_states, references, data_samples, enc_outputs_class=None,
                      enc_outputs_coord=None):  # fmt: skip
        """The losses of :meth:`loss` from the decoder's outputs, the encoder's proposals
        (two-stage) and the samples' gts."""
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(data_samples)
        cls_scores, bbox_preds = self(hidden_states, references)
        return self.loss(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
                         enc_outputs_class, enc_outputs_coord)  # fmt: skip

    def loss(self, all_layers_cls_scores, all_layers_bbox_preds, batch_gt_instances,
             batch_img_metas, enc_cls_scores=None, enc_bbox_preds=None):  # fmt: skip
        """:meth:`DETRHead.loss` of the decoder layers and, given the encoder's (B, V,
        num_classes) proposal logits and (B, V, 4) sigmoid boxes, ``enc_loss_cls``,
        ``enc_loss_bbox``, ``enc_loss_iou`` against every gt as class 0."""
        losses = super().loss(all_layers_cls_scores, all_layers_bbox_preds, batch_gt_instances,
                              batch_img_metas)  # fmt: skip
        if enc_cls_scores is not None:
            proposal_gts = [
                InstanceData(bboxes=gt.bboxes, labels=torch.zeros_like(gt.labels))
                for gt in batch_gt_instances
            ]
            enc = self.loss_by_feat_single(enc_cls_scores, enc_bbox_preds, proposal_gts,
                                           batch_img_metas)  # fmt: skip
            losses.update({f"enc_{name}": value for name, value in enc.items()})
        return losses

    # ------------------------------------------------------------------ inference
    def predict(self, hidden_states, references, img_metas, rescale=False, **kwargs):
        """The last layer's detections: the ``max_per_img`` best (query, class) pairs
        (:meth:`DETRHead.get_bboxes`); B :class:`InstanceData`."""
        return self.get_bboxes(*self(hidden_states, references), img_metas, rescale=rescale)
