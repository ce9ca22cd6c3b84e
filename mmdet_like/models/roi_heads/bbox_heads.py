"""Second-stage box head: classify each RoI and refine its box.

Class indices: ``0 .. num_classes - 1`` are the object classes and ``num_classes`` (the LAST
index) is the background, as in mmdetection v2. The classifier has ``num_classes + 1``
outputs.
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.layers import build_norm_layer
from mmdet_like.models.task_modules.multiclass_nms import multiclass_nms
from mmdet_like.models.utils.symbolic import is_zero_count
from mmdet_like.registry import BBOX_CODERS, HEADS, LOSSES, build_from_cfg

DEFAULT_BBOX_CODER = dict(
    type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
)


def _non_negative_int(value, head, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{head}: {name} must be an integer >= 0, got {value!r}")
    return value


@HEADS.register()
class ConvFCBBoxHead(nn.Module):
    """Shared 3x3 convs, then shared fully connected layers, then a classifier and a box
    regressor (mmdetection's ``ConvFCBBoxHead`` with shared branches only).

    Args:
        in_channels: channels of the RoI features.
        roi_feat_size: side of the (square) RoI features.
        num_shared_convs: 3x3 convs (``conv_out_channels`` wide, padding 1), each followed by
            the norm of ``norm_cfg`` (if any; the conv then has no bias) and a ReLU.
        num_shared_fcs: fully connected layers (``fc_out_channels`` wide), each with a ReLU.
        conv_out_channels, fc_out_channels: widths of the convs and of the fcs.
        norm_cfg: norm after each shared conv, e.g. ``dict(type="GN", num_groups=32)``;
            needs ``num_shared_convs > 0``.
        with_avg_pool: global average pool after the convs instead of flattening
            ((K, C, S, S) -> (K, C)).
        num_classes: object classes (background excluded).
        bbox_coder: box delta coder config.
        reg_class_agnostic: one box per RoI instead of one per class.
        loss_cls: a softmax loss over ``num_classes + 1`` outputs.
        loss_bbox: regression loss on the deltas.

    Module names: ``shared_convs`` (Sequential conv[, norm], ReLU per conv), ``shared_fcs``
    (Sequential Linear, ReLU per fc: ``shared_fcs.0``, ``shared_fcs.2``, ...), ``fc_cls``,
    ``fc_reg``.

    forward: (K, in_channels, S, S) -> cls_score (K, num_classes + 1), bbox_pred
    (K, 4 * num_classes) (or (K, 4) when class agnostic).
    """

    def __init__(
        self,
        in_channels=256,
        roi_feat_size=7,
        num_shared_convs=0,
        num_shared_fcs=2,
        conv_out_channels=256,
        fc_out_channels=1024,
        norm_cfg=None,
        with_avg_pool=False,
        num_classes=80,
        bbox_coder=None,
        reg_class_agnostic=False,
        loss_cls=None,
        loss_bbox=None,
    ):
        super().__init__()
        name = type(self).__name__
        self.num_shared_convs = _non_negative_int(num_shared_convs, name, "num_shared_convs")
        self.num_shared_fcs = _non_negative_int(num_shared_fcs, name, "num_shared_fcs")
        if norm_cfg is not None and num_shared_convs == 0:
            raise ValueError(
                f"{name}: norm_cfg normalises the shared convs but num_shared_convs=0; "
                "set num_shared_convs > 0 or drop norm_cfg"
            )
        self.in_channels = in_channels
        self.roi_feat_size = roi_feat_size
        self.conv_out_channels = conv_out_channels
        self.fc_out_channels = fc_out_channels
        self.norm_cfg = norm_cfg
        self.with_avg_pool = with_avg_pool
        self.num_classes = num_classes
        self.reg_class_agnostic = reg_class_agnostic
        self.bbox_coder = build_from_cfg(bbox_coder or DEFAULT_BBOX_CODER, BBOX_CODERS)
        loss_cls = loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
        if loss_cls.get("use_sigmoid", False):
            raise ValueError(f"{name}: loss_cls must be a softmax loss (use_sigmoid=False)")
        self.loss_cls = build_from_cfg(loss_cls, LOSSES)
        self.loss_bbox = build_from_cfg(
            loss_bbox or dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0), LOSSES
        )
        convs, channels = [], in_channels
        for _ in range(num_shared_convs):
            convs.append(
                nn.Conv2d(channels, conv_out_channels, 3, padding=1, bias=norm_cfg is None)
            )
            if norm_cfg is not None:
                convs.append(build_norm_layer(norm_cfg, conv_out_channels))
            convs.append(nn.ReLU(inplace=True))
            channels = conv_out_channels
        self.shared_convs = nn.Sequential(*convs)
        features = channels if with_avg_pool else channels * roi_feat_size * roi_feat_size
        fcs = []
        for _ in range(num_shared_fcs):
            fcs += [nn.Linear(features, fc_out_channels), nn.ReLU(inplace=True)]
            features = fc_out_channels
        self.shared_fcs = nn.Sequential(*fcs)
        self.fc_cls = nn.Linear(features, num_classes + 1)
        self.fc_reg = nn.Linear(features, 4 if reg_class_agnostic else 4 * num_classes)
        self.init_weights()

    def init_weights(self):
        """mmdetection's: kaiming (fan_out) convs, norms at 1 / 0, xavier-uniform shared fcs,
        normal classifier (std 0.01) and regressor (std 0.001), zero biases."""
        for m in self.shared_convs:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif getattr(m, "weight", None) is not None and m.weight.dim() == 1:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.shared_fcs:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, x):
        x = self.shared_convs(x)
        x = x.mean(dim=(2, 3)) if self.with_avg_pool else x.flatten(1)
        x = self.shared_fcs(x)
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
        if is_zero_count(rois.size(0)):  # traced: no branch on the RoI count
            return rois.new_zeros((0, 5)), torch.zeros(0, dtype=torch.long, device=rois.device)
        boxes, scores, valid = self.get_candidates(rois, cls_score, bbox_pred, img_shape, cfg)
        if rescale:
            factor = torch.as_tensor(scale_factor, dtype=boxes.dtype, device=boxes.device)
            boxes = (boxes.view(boxes.size(0), -1, 4) / factor).view(boxes.size(0), -1)
        return nms_detections(boxes, scores, valid, cfg)


def _fixed_layout(head, kwargs):
    """Refuse the layout arguments that a fixed-layout head sets itself."""
    fixed = sorted({"num_shared_convs", "num_shared_fcs"} & set(kwargs))
    if fixed:
        raise ValueError(
            f"{head}: {', '.join(fixed)} is fixed by this head; use type='ConvFCBBoxHead' "
            "to choose the numbers of shared convs and fcs"
        )


@HEADS.register()
class Shared2FCBBoxHead(ConvFCBBoxHead):
    """:class:`ConvFCBBoxHead` with two shared fcs and no convs (the FPN models' box head).

    State dict: ``shared_fcs.0``, ``shared_fcs.2``, ``fc_cls``, ``fc_reg``.
    forward: (K, in_channels, S, S) -> (K, num_classes + 1), (K, 4 * num_classes or 4).
    """

    def __init__(self, in_channels=256, roi_feat_size=7, fc_out_channels=1024, **kwargs):
        _fixed_layout(type(self).__name__, kwargs)
        super().__init__(
            in_channels=in_channels,
            roi_feat_size=roi_feat_size,
            num_shared_convs=0,
            num_shared_fcs=2,
            fc_out_channels=fc_out_channels,
            **kwargs,
        )


@HEADS.register()
class Shared4Conv1FCBBoxHead(ConvFCBBoxHead):
    """:class:`ConvFCBBoxHead` with four shared 3x3 convs (``conv_out_channels``, optional
    ``norm_cfg``) and one fc (mmdetection's GN / "4conv1fc" box head).

    forward: (K, in_channels, S, S) -> (K, num_classes + 1), (K, 4 * num_classes or 4).
    """

    def __init__(
        self, in_channels=256, roi_feat_size=7, conv_out_channels=256, fc_out_channels=1024,
        **kwargs,
    ):  # fmt: skip
        _fixed_layout(type(self).__name__, kwargs)
        super().__init__(
            in_channels=in_channels,
            roi_feat_size=roi_feat_size,
            num_shared_convs=4,
            num_shared_fcs=1,
            conv_out_channels=conv_out_channels,
            fc_out_channels=fc_out_channels,
            **kwargs,
        )


@HEADS.register()
class BBoxHead(ConvFCBBoxHead):
    """Only the classifier and the box regressor, on the flattened RoI features or, with
    ``with_avg_pool`` (the C4 models' head on res5 features), on their spatial mean.

    ``with_avg_pool`` defaults to False as in mmdetection: C4 configs set it.
    forward: (K, in_channels, S, S) -> (K, num_classes + 1), (K, 4 * num_classes or 4).
    """

    def __init__(self, in_channels=256, roi_feat_size=7, with_avg_pool=False, **kwargs):
        _fixed_layout(type(self).__name__, kwargs)
        super().__init__(
            in_channels=in_channels,
            roi_feat_size=roi_feat_size,
            num_shared_convs=0,
            num_shared_fcs=0,
            with_avg_pool=with_avg_pool,
            **kwargs,
        )


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
