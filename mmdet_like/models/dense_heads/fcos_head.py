"""FCOS (Tian et al. 2019): anchor-free, one point per feature-map cell, class scores,
distances to the box's four sides and a centre-ness per point.

Points come from a :class:`~mmdet_like.models.task_modules.MlvlPointGenerator` (with their
strides), distances are decoded by a
:class:`~mmdet_like.models.task_modules.DistancePointBBoxCoder`, detections are
:meth:`BaseDenseHead.get_bboxes` with the centre-ness as score factor.

Training targets, vectorised over images, points and gts: a point is positive for a gt
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

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from mmdet_like.models.dense_heads.base_dense_head import BaseDenseHead, flatten_levels
from mmdet_like.models.layers import Scale, build_norm_layer
from mmdet_like.registry import BBOX_CODERS, HEADS, LOSSES, PRIOR_GENERATORS, build_from_cfg

INF = 1e8


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
            (mmdetection). The centre-ness is the head's score factor
            (:meth:`BaseDenseHead.get_bboxes`).
        conv_bias: the tower convs have biases (``"auto"``: only without a norm).
        norm_cfg: norm of the tower convs (default GroupNorm of 32 groups).
        prior_prob: initial class score.
        loss_cls, loss_bbox, loss_centerness: configs (focal; IoU; sigmoid cross-entropy).
        bbox_coder: ``BBOX_CODERS`` config of the distances (``DistancePointBBoxCoder``).
        train_cfg: read by no key (FCOS assigns by geometry).
        test_cfg: ``nms_pre`` (per level, over all classes), ``score_thr``, ``nms``,
            ``max_per_img``, ``min_bbox_size``.
    """

    loss_names = ("loss_cls", "loss_bbox", "loss_centerness")
    with_score_factors = True  # the centre-ness

    def __init__(
        self, num_classes, in_channels, feat_channels=256, stacked_convs=4,
        strides=(8, 16, 32, 64, 128),
        regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF)),
        strict_regress_ranges=False, center_sampling=False, center_sample_radius=1.5,
        norm_on_bbox=False, centerness_on_reg=False, scale_regression=True, point_offset=0.5,
        centerness_weighted_bbox_loss=True, sqrt_score=False, conv_bias="auto",
        norm_cfg=None, prior_prob=0.01, loss_cls=None, loss_bbox=None, loss_centerness=None,
        bbox_coder=None, train_cfg=None, test_cfg=None,
    ):  # fmt: skip
        super().__init__()
        if len(regress_ranges) != len(strides):
            raise ValueError(
                f"FCOSHead: {len(regress_ranges)} regress_ranges for {len(strides)} strides"
            )
        self.num_classes = int(num_classes)
        self.cls_out_channels = self.num_classes
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
        self.prior_generator = build_from_cfg(
            dict(type="MlvlPointGenerator", strides=self.strides, offset=point_offset),
            PRIOR_GENERATORS,
        )
        self.bbox_coder = build_from_cfg(
            bbox_coder or dict(type="DistancePointBBoxCoder"), BBOX_CODERS
        )
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
        self.test_cfg = dict(self.default_test_cfg, **(test_cfg or {}))
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
        bias = -math.log((1 - self.prior_prob) / self.prior_prob)
        nn.init.constant_(self.conv_cls.bias, bias)

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

    # ---------------------------------------------------------------------- points, boxes
    def get_priors(self, featmap_sizes, dtype, device):
        """List over levels of (H * W, 4) points with their strides ``(x, y, stride_w,
        stride_h)``, in at least float32 (exact coordinates with half-precision outputs)."""
        return self.prior_generator.grid_priors(
            featmap_sizes, dtype=torch.promote_types(dtype, torch.float32), device=device,
            with_stride=True,
        )  # fmt: skip

    def decode_bboxes(self, priors, bbox_preds):
        """(..., 4) points with strides and (..., 4) predicted distances (in strides with
        ``norm_on_bbox``, else pixels) -> (..., 4) boxes."""
        if self.norm_on_bbox:
            bbox_preds = bbox_preds * priors[..., 2:3]
        return self.bbox_coder.decode(priors, bbox_preds)

    def _regress_ranges(self, featmap_sizes, points):
        """(P, 2) regress range of each of the (P, 4) points of :meth:`get_priors`
        (levels concatenated)."""
        return torch.cat(
            [
                points.new_tensor(bounds).expand(height * width, 2)
                for (height, width), bounds in zip(featmap_sizes, self.regress_ranges)
            ]
        )

    def get_targets(self, points, regress_ranges, batch_gt_instances):
        """Per image and point: the class (``num_classes``: background) and the four
        distances (pixels) to the assigned gt box; all images at once (their gts padded to
        the most of any image), no host sync.

        Args:
            points: (P, 4) points with strides (:meth:`get_priors`, levels concatenated);
                regress_ranges: (P, 2) (:meth:`_regress_ranges`).
            batch_gt_instances: N :class:`InstanceData` with ``bboxes`` (G_i, 4), ``labels``.

        Returns:
            (N, P) int64 labels and (N, P, 4) distances ``(l, t, r, b)``.
        """
        num_images, num_points = len(batch_gt_instances), points.size(0)
        if all(gt.bboxes.numel() == 0 for gt in batch_gt_instances):
            labels = torch.full((num_images, num_points), self.num_classes, device=points.device)
            return labels, points.new_zeros(num_images, num_points, 4)
        boxes = pad_sequence(
            [gt.bboxes[:, :4].to(points) for gt in batch_gt_instances], batch_first=True
        )  # (N, G, 4)
        gt_labels = pad_sequence(
            [gt.labels.to(points.device).long() for gt in batch_gt_instances],
            batch_first=True, padding_value=-1,
        )  # fmt: skip
        # (N, P, G, 4): every point's distances to every gt of its image
        distances = self.bbox_coder.encode(points[None, :, None, :], boxes[:, None])
        matched = (distances.min(dim=-1).values > 0) & (gt_labels >= 0)[:, None, :]
        if self.center_sampling:
            radius = self.center_sample_radius * points[:, 2:3]  # (P, 1)
            centre_x = ((boxes[..., 0] + boxes[..., 2]) / 2)[:, None, :]
            centre_y = ((boxes[..., 1] + boxes[..., 3]) / 2)[:, None, :]
            matched &= ((points[:, 0:1] - centre_x).abs() < radius) & (
                (points[:, 1:2] - centre_y).abs() < radius
            )
        largest = distances.max(dim=-1).values  # (N, P, G)
        low, high = regress_ranges[:, 0:1], regress_ranges[:, 1:2]
        if self.strict_regress_ranges:
            matched &= (largest > low) & (largest < high)
        else:
            matched &= (largest >= low) & (largest <= high)
        areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        areas = areas[:, None, :].expand_as(largest)
        min_area, gt_inds = torch.where(matched, areas, torch.full_like(areas, INF)).min(dim=2)
        labels = torch.where(min_area >= INF, self.num_classes, gt_labels.gather(1, gt_inds))
        distances = distances.gather(2, gt_inds[..., None, None].expand(-1, -1, 1, 4))
        return labels, distances[:, :, 0]

    @staticmethod
    def centerness_target(distances):
        """(..., 4) ``(l, t, r, b)`` -> (...,) ``sqrt(min(l, r) / max(l, r) * min(t, b) /
        max(t, b))``."""
        left_right, top_bottom = distances[..., [0, 2]], distances[..., [1, 3]]
        ratio = (left_right.min(-1).values / left_right.max(-1).values) * (
            top_bottom.min(-1).values / top_bottom.max(-1).values
        )
        return ratio.clamp(min=0).sqrt()

    # ------------------------------------------------------------------------------- loss
    def loss(self, cls_scores, bbox_preds, centernesses, batch_gt_instances, batch_img_metas,
             batch_gt_instances_ignore=None):  # fmt: skip
        """``loss_cls`` (focal, over every point, averaged over the positives of the batch),
        ``loss_bbox`` and ``loss_centerness`` (over the positives)."""
        featmap_sizes = [tuple(x.shape[-2:]) for x in cls_scores]
        points = torch.cat(
            self.get_priors(featmap_sizes, cls_scores[0].dtype, cls_scores[0].device)
        )
        ranges = self._regress_ranges(featmap_sizes, points)
        labels, target_distances = self.get_targets(points, ranges, batch_gt_instances)
        num_images = len(batch_img_metas)
        scores = flatten_levels(cls_scores, self.num_classes).reshape(-1, self.num_classes)
        distances = flatten_levels(bbox_preds, 4).reshape(-1, 4)
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
            self.decode_bboxes(all_points, distances),
            self.bbox_coder.decode(all_points, target_distances),
            weight=bbox_weight, avg_factor=bbox_avg,
        )  # fmt: skip
        loss_centerness = self.loss_centerness(
            centerness, centerness_targets, weight=positive, avg_factor=num_pos
        )
        return dict(zip(self.loss_names, (loss_cls, loss_bbox, loss_centerness)))
