"""FCOS (Tian et al. 2019): anchor-free, one point per feature-map cell, class scores,
distances to the box's four sides and a centre-ness per point.

Training targets per image, vectorised over points and gts: a point is positive for a gt
when it lies inside the box (and, with centre sampling, within ``center_sample_radius``
strides of its centre), and the largest of its four distances falls in its level's regress
range; among several such gts, the one of least area. The classification loss (focal) runs
over every point, the box loss (IoU or GIoU of the decoded boxes) and the centre-ness loss
(sigmoid cross-entropy against ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``) over
the positives, selected by weights (no host sync, no dynamic shapes).

Where mmdetection and torchvision differ, a switch says which (mmdetection's by default;
configs/torchvision/fcos_r50_fpn_torchvision.py sets torchvision's, and
tests/models/test_torchvision_single_stage.py names each).
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.dense_heads.anchor_head import (
    detections_per_image,
    flatten_levels,
    top_pairs,
)
from mmdet_like.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet_like.models.layers import build_norm_layer
from mmdet_like.models.utils.cfg_keys import NMS_SCHEMA
from mmdet_like.registry import HEADS, LOSSES, build_from_cfg

INF = 1e8
DEFAULT_TEST_CFG = dict(
    nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_thr=0.5),
    max_per_img=100,
)  # fmt: skip


class Scale(nn.Module):
    """A learnable scalar factor: x -> x * scale."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x):
        return x * self.scale


@HEADS.register()
class FCOSHead(BaseDenseHead):
    """Two towers of ``stacked_convs`` 3x3 convs (each with ``norm_cfg``'s norm and a ReLU),
    then 3x3 convs for the class scores (N, num_classes, H, W), the four distances
    (N, 4, H, W) and the centre-ness (N, 1, H, W) of every point.

    Args:
        num_classes, in_channels, feat_channels, stacked_convs: sizes.
        strides: stride of each input level.
        regress_ranges: ``(low, high)`` per level of the largest distance a positive may
            have; ``strict_regress_ranges`` compares with ``<`` (torchvision), else ``<=``.
        center_sampling, center_sample_radius: positives only within ``radius * stride`` of
            the gt's centre too.
        norm_on_bbox: distances predicted in strides through a ReLU (else in pixels through
            an exp).
        centerness_on_reg: the centre-ness from the regression tower (else the class one).
        scale_regression: a learnable scale per level on the distances (mmdetection; not in
            torchvision's FCOS).
        point_offset: points at ``(i + point_offset) * stride`` (0.5: cell centres,
            mmdetection; 0: torchvision).
        centerness_weighted_bbox_loss: the box loss weighted by the centre-ness targets and
            averaged over their sum (mmdetection); else averaged over the positives
            (torchvision).
        sqrt_score: detections scored ``sqrt(class score * centre-ness)`` and thresholded on
            that (torchvision); else thresholded on the class score and scored by the product
            (mmdetection).
        conv_bias: the tower convs have biases (``"auto"``: only without a norm).
        norm_cfg: norm of the tower convs (default GroupNorm of 32 groups).
        prior_prob: initial class score.
        loss_cls, loss_bbox, loss_centerness: configs (focal; IoU; sigmoid cross-entropy).
        train_cfg: read by no key (FCOS assigns by geometry).
        test_cfg: ``nms_pre`` (per level, over all classes), ``score_thr``, ``nms``,
            ``max_per_img``, ``min_bbox_size``.
    """

    loss_names = ("loss_cls", "loss_bbox", "loss_centerness")
    train_cfg_schema = {}
    test_cfg_schema = {"nms_pre": None, "score_thr": None, "nms": NMS_SCHEMA,
                       "max_per_img": None, "min_bbox_size": None}  # fmt: skip

    def __init__(
        self, num_classes, in_channels, feat_channels=256, stacked_convs=4,
        strides=(8, 16, 32, 64, 128),
        regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF)),
        strict_regress_ranges=False, center_sampling=False, center_sample_radius=1.5,
        norm_on_bbox=False, centerness_on_reg=False, scale_regression=True, point_offset=0.5,
        centerness_weighted_bbox_loss=True, sqrt_score=False, conv_bias="auto",
        norm_cfg=None, prior_prob=0.01, loss_cls=None, loss_bbox=None, loss_centerness=None,
        train_cfg=None, test_cfg=None,
    ):  # fmt: skip
        super().__init__()
        if len(regress_ranges) != len(strides):
            raise ValueError(
                f"FCOSHead: {len(regress_ranges)} regress_ranges for {len(strides)} strides"
            )
        self.num_classes = int(num_classes)
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = list(strides)
        self.regress_ranges = [tuple(float(v) for v in r) for r in regress_ranges]
        self.strict_regress_ranges = strict_regress_ranges
        self.center_sampling = center_sampling
        self.center_sample_radius = center_sample_radius
        self.norm_on_bbox = norm_on_bbox
        self.centerness_on_reg = centerness_on_reg
        self.point_offset = point_offset
        self.centerness_weighted_bbox_loss = centerness_weighted_bbox_loss
        self.sqrt_score = sqrt_score
        self.norm_cfg = norm_cfg if norm_cfg is not None else dict(type="GN", num_groups=32)
        self.conv_bias = (self.norm_cfg is None) if conv_bias == "auto" else bool(conv_bias)
        self.prior_prob = prior_prob
        self.loss_cls = build_from_cfg(
            loss_cls or dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0), LOSSES
        )
        if not getattr(self.loss_cls, "use_sigmoid", False):
            raise ValueError("FCOSHead: loss_cls must be a sigmoid loss (e.g. FocalLoss)")
        self.loss_bbox = build_from_cfg(loss_bbox or dict(type="IoULoss"), LOSSES)
        self.loss_centerness = build_from_cfg(
            loss_centerness or dict(type="CrossEntropyLoss", use_sigmoid=True), LOSSES
        )
        self.train_cfg = train_cfg
        self.test_cfg = dict(DEFAULT_TEST_CFG, **(test_cfg or {}))
        self.cls_convs = self._tower()
        self.reg_convs = self._tower()
        tower_channels = feat_channels if stacked_convs else in_channels
        self.conv_cls = nn.Conv2d(tower_channels, self.num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(tower_channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(tower_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides) if scale_regression else None
        self.init_weights()

    def _tower(self):
        layers = []
        for i in range(self.stacked_convs):
            channels = self.in_channels if i == 0 else self.feat_channels
            layers.append(
                nn.Conv2d(channels, self.feat_channels, 3, padding=1, bias=self.conv_bias)
            )
            if self.norm_cfg is not None:
                layers.append(build_norm_layer(self.norm_cfg, self.feat_channels))
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    def init_weights(self):
        """Normal(0, 0.01) conv weights, zero biases, unit norms, and the classifier's bias at
        ``-log((1 - prior_prob) / prior_prob)``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        bias = -torch.log(torch.tensor((1 - self.prior_prob) / self.prior_prob))
        nn.init.constant_(self.conv_cls.bias, float(bias))

    # ----------------------------------------------------------------------------- forward
    def forward_single(self, x, level=0):
        """One level: (N, C, H, W) -> ((N, num_classes, H, W) logits, (N, 4, H, W) distances
        (in strides with ``norm_on_bbox``, else pixels), (N, 1, H, W) centre-ness logits)."""
        cls_feat = self.cls_convs(x)
        reg_feat = self.reg_convs(x)
        distances = self.conv_reg(reg_feat)
        if self.scales is not None:
            distances = self.scales[level](distances)
        distances = F.relu(distances) if self.norm_on_bbox else distances.float().exp()
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        return self.conv_cls(cls_feat), distances, centerness

    def forward(self, feats):
        """Tuple of L levels -> (L class logits, L distances, L centre-ness logits)."""
        if len(feats) != len(self.strides):
            raise ValueError(
                f"FCOSHead: {len(feats)} feature levels for {len(self.strides)} strides"
            )
        per_level = [self.forward_single(x, level) for level, x in enumerate(feats)]
        return tuple(list(outputs) for outputs in zip(*per_level))

    # ------------------------------------------------------------------------------ points
    def _points(self, featmap_sizes, device, dtype=torch.float32):
        """(P, 2) ``(x, y)`` of every level's points (levels concatenated, each in (y, x)
        raster order, the order of :func:`flatten_levels`), (P,) their strides and (P, 2)
        their regress ranges."""
        points, strides, ranges = [], [], []
        for (height, width), stride, bounds in zip(
            featmap_sizes, self.strides, self.regress_ranges
        ):
            xs = (torch.arange(width, device=device, dtype=dtype) + self.point_offset) * stride
            ys = (torch.arange(height, device=device, dtype=dtype) + self.point_offset) * stride
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
            strides.append(torch.full((height * width,), float(stride), device=device, dtype=dtype))
            ranges.append(
                torch.tensor(bounds, device=device, dtype=dtype).expand(height * width, 2)
            )
        return torch.cat(points), torch.cat(strides), torch.cat(ranges)

    def get_targets(self, points, point_strides, regress_ranges, batch_gt_instances):
        """Per image and point: the class (``num_classes``: background) and the four
        distances (pixels) to the assigned gt box.

        Args:
            points: (P, 2); point_strides: (P,); regress_ranges: (P, 2) (:meth:`_points`).
            batch_gt_instances: N :class:`InstanceData` with ``bboxes`` (G_i, 4), ``labels``.

        Returns:
            (N, P) int64 labels and (N, P, 4) distances ``(l, t, r, b)``.
        """
        all_labels, all_distances = [], []
        xs, ys = points[:, 0:1], points[:, 1:2]  # (P, 1)
        for gt in batch_gt_instances:
            boxes = gt.bboxes.to(points.dtype)
            if boxes.numel() == 0:
                all_labels.append(torch.full_like(xs[:, 0], self.num_classes, dtype=torch.long))
                all_distances.append(points.new_zeros(points.size(0), 4))
                continue
            x0, y0, x1, y1 = boxes.unbind(1)  # (G,) each
            distances = torch.stack([xs - x0, ys - y0, x1 - xs, y1 - ys], dim=2)  # (P, G, 4)
            matched = distances.min(dim=2).values > 0
            if self.center_sampling:
                radius = self.center_sample_radius * point_strides[:, None]
                matched &= ((xs - (x0 + x1) / 2).abs() < radius) & (
                    (ys - (y0 + y1) / 2).abs() < radius
                )
            largest = distances.max(dim=2).values
            low, high = regress_ranges[:, 0:1], regress_ranges[:, 1:2]
            if self.strict_regress_ranges:
                matched &= (largest > low) & (largest < high)
            else:
                matched &= (largest >= low) & (largest <= high)
            areas = ((x1 - x0) * (y1 - y0))[None].expand_as(largest)
            min_area, gt_inds = torch.where(matched, areas, torch.full_like(areas, INF)).min(dim=1)
            labels = gt.labels.to(points.device)[gt_inds]
            all_labels.append(torch.where(min_area >= INF, self.num_classes, labels))
            all_distances.append(
                distances[torch.arange(points.size(0), device=points.device), gt_inds]
            )
        return torch.stack(all_labels), torch.stack(all_distances)

    @staticmethod
    def centerness_target(distances):
        """(..., 4) ``(l, t, r, b)`` -> (...,) ``sqrt(min(l, r) / max(l, r) * min(t, b) /
        max(t, b))``."""
        left_right, top_bottom = distances[..., [0, 2]], distances[..., [1, 3]]
        ratio = (left_right.min(-1).values / left_right.max(-1).values) * (
            top_bottom.min(-1).values / top_bottom.max(-1).values
        )
        return ratio.clamp(min=0).sqrt()

    @staticmethod
    def _decode(points, distances):
        """(..., 2) points and (..., 4) distances -> (..., 4) boxes."""
        return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)

    # ------------------------------------------------------------------------------- loss
    def loss(self, cls_scores, bbox_preds, centernesses, batch_gt_instances, batch_img_metas,
             batch_gt_instances_ignore=None):  # fmt: skip
        """``loss_cls`` (focal, over every point, averaged over the positives of the batch),
        ``loss_bbox`` and ``loss_centerness`` (over the positives)."""
        featmap_sizes = [tuple(x.shape[-2:]) for x in cls_scores]
        points, point_strides, ranges = self._points(featmap_sizes, cls_scores[0].device)
        labels, target_distances = self.get_targets(points, point_strides, ranges,
                                                    batch_gt_instances)  # fmt: skip
        num_images = len(batch_img_metas)
        scores = flatten_levels(cls_scores, self.num_classes).reshape(-1, self.num_classes)
        distances = flatten_levels(bbox_preds, 4)
        if self.norm_on_bbox:
            distances = distances * point_strides[None, :, None]
        distances = distances.reshape(-1, 4)
        centerness = flatten_levels(centernesses, 1).reshape(-1)
        labels, target_distances = labels.reshape(-1), target_distances.reshape(-1, 4)
        positive = (labels < self.num_classes).to(scores.dtype)
        num_pos = positive.sum().clamp(min=1)  # a tensor: no host sync
        loss_cls = self.loss_cls(scores, labels, avg_factor=num_pos)
        # negatives get a valid stand-in target (their weight is 0): every value stays finite
        target_distances = torch.where(positive[:, None] > 0, target_distances,
                                       torch.ones_like(target_distances))  # fmt: skip
        all_points = points.repeat(num_images, 1)
        centerness_targets = self.centerness_target(target_distances)
        if self.centerness_weighted_bbox_loss:
            bbox_weight = centerness_targets * positive
            bbox_avg = bbox_weight.sum().clamp(min=1e-6)
        else:
            bbox_weight, bbox_avg = positive, num_pos
        loss_bbox = self.loss_bbox(
            self._decode(all_points, distances), self._decode(all_points, target_distances),
            weight=bbox_weight, avg_factor=bbox_avg,
        )  # fmt: skip
        loss_centerness = self.loss_centerness(
            centerness, centerness_targets, weight=positive, avg_factor=num_pos
        )
        return dict(zip(self.loss_names, (loss_cls, loss_bbox, loss_centerness)))

    # ------------------------------------------------------------------------- detections
    @torch.no_grad()
    def get_bboxes(self, cls_scores, bbox_preds, centernesses, img_metas, cfg=None,
                   rescale=False):  # fmt: skip
        """Detections of every image: per level the ``nms_pre`` best (point, class) pairs
        above ``score_thr``, decoded, then :func:`detections_per_image` (clip, size filter,
        class-wise NMS, ``max_per_img``). N :class:`InstanceData` (``bboxes``, ``scores``,
        ``labels``), in the original image with ``rescale``."""
        cfg = dict(self.test_cfg, **(cfg or {}))
        featmap_sizes = [tuple(x.shape[-2:]) for x in cls_scores]
        points, point_strides, _ = self._points(featmap_sizes, cls_scores[0].device)
        level_sizes = [h * w for h, w in featmap_sizes]
        all_selected, all_scores, all_labels, all_boxes = [], [], [], []
        for cls, reg, ctr, level_points, level_strides in zip(
            cls_scores, bbox_preds, centernesses, points.split(level_sizes),
            point_strides.split(level_sizes),
        ):  # fmt: skip
            logits = flatten_levels([cls], self.num_classes)  # (N, K, C)
            centerness = flatten_levels([ctr], 1).sigmoid()  # (N, K, 1)
            if self.sqrt_score:
                scores = (logits.sigmoid() * centerness).sqrt()
                selected, point_inds, labels = top_pairs(scores, cfg["score_thr"], cfg["nms_pre"])
            else:  # ranked on the logits, only the kept pairs activated
                selected, point_inds, labels = top_pairs(
                    logits, cfg["score_thr"], cfg["nms_pre"], activation=torch.sigmoid
                )
            final = selected
            if not self.sqrt_score:  # thresholded on the class score, scored with centre-ness
                final = selected * centerness[..., 0].gather(1, point_inds)
            distances = flatten_levels([reg], 4).gather(1, point_inds[..., None].expand(-1, -1, 4))
            if self.norm_on_bbox:
                distances = distances * level_strides[point_inds][..., None]
            all_boxes.append(self._decode(level_points[point_inds], distances))
            all_selected.append(selected)
            all_scores.append(final)
            all_labels.append(labels)
        selected = torch.cat(all_selected, 1)
        return detections_per_image(
            torch.cat(all_scores, 1), torch.cat(all_labels, 1), torch.cat(all_boxes, 1),
            selected > cfg["score_thr"], img_metas, cfg, rescale, self.num_classes,
        )  # fmt: skip
