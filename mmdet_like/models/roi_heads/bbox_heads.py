"""Second-stage box head: classify each RoI and refine its box.

Class indices: ``0 .. num_classes - 1`` are the object classes and ``num_classes`` (the LAST
index) is the background, as in mmdetection v2. The classifier has ``num_classes + 1``
outputs.
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.task_modules.multiclass_nms import multiclass_nms
from mmdet_like.registry import BBOX_CODERS, HEADS, LOSSES, build_from_cfg

DEFAULT_BBOX_CODER = dict(
    type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
)


@HEADS.register()
class Shared2FCBBoxHead(nn.Module):
    """Two shared fully connected layers, then a classifier and a box regressor.

    Args:
        in_channels: channels of the RoI features.
        roi_feat_size: side of the (square) RoI features.
        fc_out_channels: width of the two fc layers.
        num_classes: object classes (background excluded).
        bbox_coder: box delta coder config.
        reg_class_agnostic: one box per RoI instead of one per class.
        loss_cls: a softmax loss over ``num_classes + 1`` outputs.
        loss_bbox: regression loss on the deltas.

    forward: (K, in_channels, S, S) -> cls_score (K, num_classes + 1), bbox_pred
    (K, 4 * num_classes) (or (K, 4) when class agnostic).
    """

    def __init__(
        self,
        in_channels=256,
        roi_feat_size=7,
        fc_out_channels=1024,
        num_classes=80,
        bbox_coder=None,
        reg_class_agnostic=False,
        loss_cls=None,
        loss_bbox=None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.roi_feat_size = roi_feat_size
        self.num_classes = num_classes
        self.reg_class_agnostic = reg_class_agnostic
        self.bbox_coder = build_from_cfg(bbox_coder or DEFAULT_BBOX_CODER, BBOX_CODERS)
        loss_cls = loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
        if loss_cls.get("use_sigmoid", False):
            raise ValueError("Shared2FCBBoxHead: loss_cls must be a softmax loss")
        self.loss_cls = build_from_cfg(loss_cls, LOSSES)
        self.loss_bbox = build_from_cfg(
            loss_bbox or dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0), LOSSES
        )
        self.shared_fcs = nn.Sequential(
            nn.Linear(in_channels * roi_feat_size * roi_feat_size, fc_out_channels),
            nn.ReLU(inplace=True),
            nn.Linear(fc_out_channels, fc_out_channels),
            nn.ReLU(inplace=True),
        )
        self.fc_cls = nn.Linear(fc_out_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_out_channels, 4 if reg_class_agnostic else 4 * num_classes)
        self.init_weights()

    def init_weights(self):
        for m in self.shared_fcs:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, x):
        x = self.shared_fcs(x.flatten(1))
        return self.fc_cls(x), self.fc_reg(x)

    def get_targets(self, sampling_results, rcnn_train_cfg=None):
        """Targets of all sampled RoIs of the batch, in ``bbox2roi([r.bboxes ...])`` order
        (per image: positives, then negatives).

        Returns:
            labels (K,) int64 (``num_classes`` for background), label_weights (K,),
            bbox_targets (K, 4) encoded deltas, bbox_weights (K, 4) (zero for negatives).
        """
        pos_weight = (rcnn_train_cfg or {}).get("pos_weight", -1)
        pos_weight = 1.0 if pos_weight <= 0 else float(pos_weight)
        bboxes = torch.cat([r.bboxes for r in sampling_results])
        pos_gt_bboxes = torch.cat([r.pos_gt_bboxes for r in sampling_results])
        is_pos = torch.cat(
            [
                torch.cat(
                    [
                        r.pos_inds.new_ones(r.pos_inds.numel(), dtype=torch.bool),
                        r.neg_inds.new_zeros(r.neg_inds.numel(), dtype=torch.bool),
                    ]
                )
                for r in sampling_results
            ]
        )
        pos_labels = torch.cat([r.pos_gt_labels for r in sampling_results])
        labels = torch.full(
            (bboxes.size(0),), self.num_classes, dtype=torch.long, device=bboxes.device
        )
        labels = labels.masked_scatter(is_pos, pos_labels)
        label_weights = torch.where(is_pos, pos_weight, 1.0).to(bboxes.dtype)
        # one encode over every positive of the batch
        pos_targets = self.bbox_coder.encode(bboxes[is_pos], pos_gt_bboxes).to(bboxes.dtype)
        bbox_targets = bboxes.new_zeros((bboxes.size(0), 4)).masked_scatter(
            is_pos[:, None].expand(-1, 4), pos_targets
        )
        bbox_weights = is_pos[:, None].expand(-1, 4).to(bboxes.dtype)
        return labels, label_weights, bbox_targets, bbox_weights

    def loss(self, cls_score, bbox_pred, labels, label_weights, bbox_targets, bbox_weights):
        """``dict(loss_cls, loss_bbox, acc)``; both losses averaged over the sampled RoIs
        (``acc``, the classification accuracy in percent, is logged, not optimised)."""
        num_rois = max(labels.numel(), 1)
        loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=num_rois)
        if self.reg_class_agnostic:
            pred = bbox_pred.view(-1, 4)
        else:
            # each RoI's own-class deltas; negatives pick class 0 and get zero weight
            cls_inds = labels.clamp(max=self.num_classes - 1)
            pred = bbox_pred.view(bbox_pred.size(0), -1, 4)[
                torch.arange(bbox_pred.size(0), device=bbox_pred.device), cls_inds
            ]
        loss_bbox = self.loss_bbox(pred, bbox_targets, bbox_weights, avg_factor=num_rois)
        with torch.no_grad():
            acc = (cls_score.argmax(1) == labels).float().mean() * 100 if labels.numel() else 0
            acc = torch.as_tensor(acc, dtype=cls_score.dtype, device=cls_score.device)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, acc=acc)

    @torch.no_grad()
    def get_candidates(self, rois, cls_score, bbox_pred, img_shape, cfg):
        """One image's scored boxes before NMS, in the input image.

        Args:
            rois: (n, 5) RoIs of the image; cls_score (n, num_classes + 1) logits; bbox_pred
                (n, 4 * num_classes) or (n, 4).
            img_shape: ``(h, w, ...)`` of the resized input (boxes are clipped to it).
            cfg: ``min_bbox_size > 0`` marks boxes narrower or lower than it as invalid, like
                torchvision's ``remove_small_boxes``.

        Returns:
            boxes (n, 4 * num_classes) or (n, 4), object-class probabilities (n, num_classes)
            and (n, num_classes) validity (or None when every box is valid).
        """
        scores = F.softmax(cls_score.float(), dim=1)[:, : self.num_classes]
        boxes = self.bbox_coder.decode(rois[:, 1:5], bbox_pred.float(), max_shape=img_shape)
        valid = None
        min_size = cfg.get("min_bbox_size", 0)
        if min_size > 0:
            sides = boxes.view(boxes.size(0), -1, 4)
            valid = (sides[..., 2] - sides[..., 0] >= min_size) & (
                sides[..., 3] - sides[..., 1] >= min_size
            )
            valid = valid.expand(-1, self.num_classes)
        return boxes, scores, valid

    @torch.no_grad()
    def get_bboxes(self, rois, cls_score, bbox_pred, img_shape, scale_factor, rescale, cfg):
        """Detections of one image: :meth:`get_candidates`, optionally rescaled to the
        original image (``scale_factor`` ``[w, h, w, h]``), then :func:`multiclass_nms` with
        ``cfg`` ``dict(score_thr, nms=dict(iou_thr), max_per_img[, min_bbox_size])``.

        Returns:
            (m, 5) ``[x1, y1, x2, y2, score]`` and (m,) int64 labels.
        """
        if rois.size(0) == 0:
            return rois.new_zeros((0, 5)), torch.zeros(0, dtype=torch.long, device=rois.device)
        boxes, scores, valid = self.get_candidates(rois, cls_score, bbox_pred, img_shape, cfg)
        if rescale:
            factor = torch.as_tensor(scale_factor, dtype=boxes.dtype, device=boxes.device)
            boxes = (boxes.view(boxes.size(0), -1, 4) / factor).view(boxes.size(0), -1)
        return nms_detections(boxes, scores, valid, cfg)


def nms_detections(boxes, scores, valid, cfg):
    """:func:`multiclass_nms` with the test config's ``score_thr``, ``nms`` and
    ``max_per_img``."""
    return multiclass_nms(
        boxes,
        scores,
        cfg.get("score_thr", 0.05),
        cfg.get("nms", dict(iou_thr=0.5)),
        cfg.get("max_per_img", 100),
        valid,
    )
