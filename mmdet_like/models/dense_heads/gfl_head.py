"""Generalized Focal Loss (Li et al., "Generalized Focal Loss: Learning Qualified and
Distributed Bounding Boxes for Dense Object Detection", NeurIPS 2020), mmdetection's
``GFLHead``.

One square anchor per location (ATSS assignment); its centre is the point the box's four
sides are measured from. Each side's distance is a distribution over ``reg_max + 1`` bins
(0 .. ``reg_max`` strides): :class:`Integral` turns its softmax into the expected distance.
The class branch predicts a joint class-quality score: trained by the quality focal loss
towards the IoU of the positive's decoded box with its gt (0 for negatives), it is the
detection score itself (no separate score factor).

Losses over the batch: ``loss_cls`` (QFL over every assigned anchor, averaged over the
positives); ``loss_bbox`` (GIoU of the decoded boxes) and ``loss_dfl`` (DFL of the four
sides' distributions against the gt distances, averaged over the sides) at the positives,
each weighted by the positive's predicted quality (its highest class score, detached) and
averaged over those weights' sum (at least 1). Boxes are compared in stride units, as
mmdetection does.
"""

import torch
from torch import nn

from mmdet_like.models.dense_heads.atss_head import (
    ATSS_ANCHOR_GENERATOR,
    GN_32,
    check_all_anchor_training,
)
from mmdet_like.models.dense_heads.retina_head import RetinaHead
from mmdet_like.registry import HEADS, LOSSES, build_from_cfg
from mmdet_like.structures import bbox_overlaps


class Integral(nn.Module):
    """(..., 4 * (reg_max + 1)) logits, a distribution over the bins ``0 .. reg_max`` for
    each of the four sides -> (..., 4) expected distances (softmax, then the bins' mean)."""

    def __init__(self, reg_max=16):
        super().__init__()
        self.reg_max = int(reg_max)
        self.register_buffer("project", torch.linspace(0, self.reg_max, self.reg_max + 1))

    def forward(self, x):
        probs = x.unflatten(-1, (4, self.reg_max + 1)).softmax(-1)
        return probs @ self.project.to(probs.dtype)


@HEADS.register()
class GFLHead(RetinaHead):
    """RetinaNet-style towers (GroupNorm), then 3x3 convs: (N, num_classes, H, W) joint
    class-quality logits and (N, 4 * (reg_max + 1), H, W) distance distributions times a
    learnable scale per level.

    Args:
        num_classes, in_channels, stacked_convs, feat_channels, prior_prob: as
            :class:`RetinaHead`.
        reg_max: the largest distance, in strides (bins ``0 .. reg_max``).
        norm_cfg: norm of the tower convs (default GroupNorm of 32 groups).
        anchor_generator: default ATSS's (one anchor per location, 8 strides wide).
        bbox_coder: default ``DistancePointBBoxCoder`` (sides from the anchor's centre).
        loss_cls: default ``QualityFocalLoss`` (beta 2); loss_bbox: default ``GIoULoss``
            (weight 2); loss_dfl: default ``DistributionFocalLoss`` (weight 0.25).
        train_cfg: ``assigner`` (``ATSSAssigner(topk=9)`` in the configs),
            ``allowed_border``, ``pos_weight``; no sampler.
        Other arguments: :class:`AnchorHead`.
    """

    loss_names = ("loss_cls", "loss_bbox", "loss_dfl")

    def __init__(
        self, num_classes, in_channels, reg_max=16, norm_cfg=GN_32, anchor_generator=None,
        bbox_coder=None, loss_cls=None, loss_bbox=None, loss_dfl=None, reg_decoded_bbox=True,
        **kwargs,
    ):  # fmt: skip
        if not reg_decoded_bbox:
            raise ValueError("GFLHead: the box loss compares decoded boxes (reg_decoded_bbox)")
        self.reg_max = int(reg_max)
        self.bbox_pred_channels = 4 * (self.reg_max + 1)
        super().__init__(
            num_classes, in_channels, norm_cfg=norm_cfg,
            anchor_generator=anchor_generator or ATSS_ANCHOR_GENERATOR,
            bbox_coder=bbox_coder or dict(type="DistancePointBBoxCoder"),
            loss_cls=loss_cls or dict(type="QualityFocalLoss", beta=2.0),
            loss_bbox=loss_bbox or dict(type="GIoULoss", loss_weight=2.0),
            reg_decoded_bbox=True, scale_regression=True, **kwargs,
        )  # fmt: skip
        if self.num_anchors != 1:
            raise ValueError(
                f"GFLHead: one anchor per location (its centre is the boxes' point), got "
                f"{self.num_anchors}"
            )
        self.integral = Integral(self.reg_max)
        self.loss_dfl = build_from_cfg(
            loss_dfl or dict(type="DistributionFocalLoss", loss_weight=0.25), LOSSES
        )
        check_all_anchor_training(self)

    def get_priors(self, featmap_sizes, dtype, device):
        """List over levels of (H * W, 6) anchors with their level's stride: ``(x1, y1, x2,
        y2, stride_w, stride_h)``."""
        anchors = super().get_priors(featmap_sizes, dtype, device)
        return [
            torch.cat([level, level.new_tensor(stride).expand(level.size(0), 2)], dim=1)
            for level, stride in zip(anchors, self.prior_generator.strides)
        ]

    def _in_strides(self, priors, bbox_preds):
        """Anchor centres (..., 2) and expected distances (..., 4), both in strides, and the
        (..., 4) strides ``(w, h, w, h)``."""
        strides = torch.cat([priors[..., 4:6], priors[..., 4:6]], dim=-1)
        centres = (priors[..., :2] + priors[..., 2:4]) / 2 / strides[..., :2]
        return centres, self.integral(bbox_preds), strides

    def decode_bboxes(self, priors, bbox_preds):
        """(..., 6) anchors with strides and (..., 4 * (reg_max + 1)) distributions ->
        (..., 4) boxes in the input image."""
        centres, distances, strides = self._in_strides(priors, bbox_preds)
        return self.bbox_coder.decode(centres, distances) * strides

    def loss_of_samples(self, scores, deltas, targets, score_factors=None):
        """The three losses at the assigned anchors (:meth:`AnchorHead.loss_of_samples`)."""
        positive = (targets.labels < self.num_classes).to(deltas.dtype)
        centres, distances, strides = self._in_strides(targets.anchors, deltas)
        boxes = self.bbox_coder.decode(centres, distances)  # in strides
        # a negative's anchor stands in for its gt box: finite targets, weight 0
        gt_boxes = torch.where(positive[:, None] > 0, targets.bbox_targets,
                               targets.anchors[:, :4]) / strides  # fmt: skip
        # the IoU-quality targets (AssignResult.iou_targets, read from the shared targets)
        quality = bbox_overlaps(boxes.detach(), gt_boxes, is_aligned=True) * positive
        loss_cls = self.loss_cls(
            scores, (targets.labels, quality), weight=targets.label_weights,
            avg_factor=targets.avg_factor,
        )  # fmt: skip
        weight = scores.detach().sigmoid().max(dim=1).values * positive
        avg_factor = weight.sum().clamp(min=1)
        loss_bbox = self.loss_bbox(boxes, gt_boxes, weight=weight, avg_factor=avg_factor)
        side_targets = self.bbox_coder.encode(centres, gt_boxes, max_dis=self.reg_max)
        loss_dfl = self.loss_dfl(
            deltas.reshape(-1, self.reg_max + 1), side_targets.reshape(-1),
            weight=weight[:, None].expand(-1, 4).reshape(-1), avg_factor=4 * avg_factor,
        )  # fmt: skip
        return dict(zip(self.loss_names, (loss_cls, loss_bbox, loss_dfl)))
