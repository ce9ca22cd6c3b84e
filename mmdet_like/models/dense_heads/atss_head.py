"""ATSS (Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection",
CVPR 2020), mmdetection's ``ATSSHead``: RetinaNet's GroupNorm towers with one square anchor
per location, positives chosen by :class:`~mmdet_like.models.task_modules.ATSSAssigner`, and a
centre-ness branch whose sigmoid multiplies the class scores of the detections (the shared
score-factor path of :meth:`BaseDenseHead.get_bboxes`).

Losses over the batch: the sigmoid focal loss over every assigned anchor, averaged over the
positives; the GIoU loss of the decoded boxes at the positives, each weighted by its
centre-ness target and averaged over their sum (at least 1); the centre-ness's sigmoid
cross-entropy against those targets at the positives, averaged over the positives. The
centre-ness target of a positive is FCOS's, measured from its anchor's centre to its gt box.
"""

import torch
from torch import nn

from mmdet_like.models.dense_heads.fcos_head import FCOSHead
from mmdet_like.models.dense_heads.retina_head import RetinaHead
from mmdet_like.models.task_modules import DistancePointBBoxCoder
from mmdet_like.registry import HEADS, LOSSES, build_from_cfg

ATSS_ANCHOR_GENERATOR = dict(
    type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
    strides=[8, 16, 32, 64, 128],
)  # fmt: skip
ATSS_BBOX_CODER = dict(
    type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
)
GN_32 = dict(type="GN", num_groups=32, requires_grad=True)


def check_all_anchor_training(head):
    """ATSS and GFL train every assigned anchor and average over the whole batch: refuse a
    sampler or ``loss_avg='image'`` (their box losses are normalised by their own sums)."""
    if head.train_cfg is not None and (
        head.sampling or head.train_cfg.get("loss_avg", "batch") != "batch"
    ):
        raise ValueError(
            f"{type(head).__name__}: trains every assigned anchor (no train_cfg.sampler, the "
            "PseudoSampler) with the losses averaged over the batch (loss_avg='batch')"
        )


@HEADS.register()
class ATSSHead(RetinaHead):
    """RetinaNet-style towers (GroupNorm), then 3x3 convs: (N, A * num_classes, H, W) class
    logits, (N, A * 4, H, W) deltas times a learnable scale per level, (N, A, H, W)
    centre-ness logits (from the regression tower).

    Args:
        num_classes, in_channels, stacked_convs, feat_channels, prior_prob: as
            :class:`RetinaHead`.
        norm_cfg: norm of the tower convs (default GroupNorm of 32 groups).
        anchor_generator: default one anchor per location, 8 strides wide (octave base
            scale 8, one scale per octave, ratio 1), strides 8-128.
        bbox_coder: default ``DeltaXYWHBBoxCoder`` with stds 0.1, 0.1, 0.2, 0.2.
        loss_cls: default the sigmoid focal loss; loss_bbox: default ``GIoULoss`` (weight
            2) on decoded boxes; loss_centerness: default the sigmoid cross-entropy.
        train_cfg: ``assigner`` (``ATSSAssigner(topk=9)`` in the configs),
            ``allowed_border``, ``pos_weight``; no sampler.
        Other arguments: :class:`AnchorHead`.
    """

    loss_names = ("loss_cls", "loss_bbox", "loss_centerness")
    with_score_factors = True  # the centre-ness

    def __init__(
        self, num_classes, in_channels, norm_cfg=GN_32, anchor_generator=None, bbox_coder=None,
        loss_bbox=None, loss_centerness=None, reg_decoded_bbox=True, **kwargs,
    ):  # fmt: skip
        if not reg_decoded_bbox:
            raise ValueError("ATSSHead: the box loss compares decoded boxes (reg_decoded_bbox)")
        super().__init__(
            num_classes, in_channels, norm_cfg=norm_cfg,
            anchor_generator=anchor_generator or ATSS_ANCHOR_GENERATOR,
            bbox_coder=bbox_coder or ATSS_BBOX_CODER,
            loss_bbox=loss_bbox or dict(type="GIoULoss", loss_weight=2.0),
            reg_decoded_bbox=True, scale_regression=True, **kwargs,
        )  # fmt: skip
        self.loss_centerness = build_from_cfg(
            loss_centerness or dict(type="CrossEntropyLoss", use_sigmoid=True), LOSSES
        )
        check_all_anchor_training(self)

    def _init_layers(self):
        super()._init_layers()
        self.atss_centerness = nn.Conv2d(
            self.retina_reg.in_channels, self.num_anchors, 3, padding=1
        )

    def forward_single(self, x, level=0):
        """(N, C, H, W) -> class logits, scaled deltas, centre-ness logits."""
        reg_feat = self.reg_convs(x)
        bbox_pred = self.scaled(self.retina_reg(reg_feat), level)
        return self.retina_cls(self.cls_convs(x)), bbox_pred, self.atss_centerness(reg_feat)

    def loss_of_samples(self, scores, deltas, targets, score_factors=None):
        """The three losses at the assigned anchors (:meth:`AnchorHead.loss_of_samples`)."""
        positive = (targets.labels < self.num_classes).to(deltas.dtype)
        anchors = targets.anchors[:, :4]
        # a negative's anchor stands in for its gt box: finite targets, weight 0
        gt_boxes = torch.where(positive[:, None] > 0, targets.bbox_targets, anchors)
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        distances = DistancePointBBoxCoder().encode(centres, gt_boxes)
        centerness = FCOSHead.centerness_target(distances) * positive
        loss_cls = self.loss_cls(
            scores, targets.labels, targets.label_weights, avg_factor=targets.avg_factor
        )
        loss_bbox = self.loss_bbox(
            self.decode_bboxes(anchors, deltas), gt_boxes, weight=centerness,
            avg_factor=centerness.sum().clamp(min=1),
        )  # fmt: skip
        loss_centerness = self.loss_centerness(
            score_factors, centerness, weight=positive, avg_factor=targets.avg_factor
        )
        return dict(zip(self.loss_names, (loss_cls, loss_bbox, loss_centerness)))
