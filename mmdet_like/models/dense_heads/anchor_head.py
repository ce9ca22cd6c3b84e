"""Dense heads on anchors: the base every anchor-based head subclasses.

A subclass builds its layers (:meth:`AnchorHead._init_layers`), runs them on one level
(:meth:`AnchorHead.forward_single`) and may initialise them its own way
(:meth:`AnchorHead.init_weights`); anchors (the ``prior_generator``), assignment and
sampling, targets and losses are shared here, decoding and detections in
:class:`~mmdet_like.models.dense_heads.BaseDenseHead`.
:class:`~mmdet_like.models.dense_heads.RPNHead` is such a subclass in proposal mode; a
single-stage detector's head is one in detection mode.

Anchor order: per level, location-major (the A anchors of a cell consecutive), levels
concatenated; :func:`flatten_levels` puts the head's outputs in the same order.
"""

from typing import NamedTuple

import torch
from torch import nn

from mmdet_like.models.dense_heads.base_dense_head import (
    DEFAULT_DETECTION_TEST_CFG,
    BaseDenseHead,
    detections_per_image,
    flatten_levels,
    top_pairs,
)
from mmdet_like.registry import (
    BBOX_ASSIGNERS,
    BBOX_CODERS,
    BBOX_SAMPLERS,
    HEADS,
    LOSSES,
    PRIOR_GENERATORS,
    build_from_cfg,
)
from mmdet_like.structures.instance_data import InstanceData

# the shared detection helpers, importable from here as before
__all__ = [
    "DEFAULT_DETECTION_TEST_CFG",
    "AnchorHead",
    "AnchorTargets",
    "anchor_inside_flags",
    "detections_per_image",
    "flatten_levels",
    "top_pairs",
]

DEFAULT_ANCHOR_GENERATOR = dict(
    type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
)
DEFAULT_BBOX_CODER = dict(
    type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0, 1.0, 1.0, 1.0]
)


class AnchorTargets(NamedTuple):
    """Training targets of the S sampled anchors of a batch (:meth:`AnchorHead.get_targets`),
    sorted by anchor index (so by level). Anchors that are not sampled have no loss."""

    image_inds: torch.Tensor  # (S,) image of each sampled anchor
    anchor_inds: torch.Tensor  # (S,) index among all levels' anchors
    anchors: torch.Tensor  # (S, 4) the anchors themselves
    labels: torch.Tensor  # (S,) int64 class of positives; num_classes for negatives
    label_weights: torch.Tensor  # (S,)
    bbox_targets: torch.Tensor  # (S, 4) encoded deltas (gt boxes with reg_decoded_bbox)
    bbox_weights: torch.Tensor  # (S, 4) 1.0 for positives
    avg_factor: object  # what the losses are averaged over: S, or the positives (a tensor)


def anchor_inside_flags(anchors, valid_flags, img_shape, allowed_border=0):
    """(A, 4) anchors -> (A,) valid and within ``allowed_border`` pixels of the image
    ``(h, w)`` (a negative border keeps every valid anchor)."""
    if allowed_border < 0:
        return valid_flags
    height, width = img_shape[0], img_shape[1]
    return (
        valid_flags
        & (anchors[:, 0] >= -allowed_border)
        & (anchors[:, 1] >= -allowed_border)
        & (anchors[:, 2] < width + allowed_border)
        & (anchors[:, 3] < height + allowed_border)
    )


@HEADS.register()
class AnchorHead(BaseDenseHead):
    """Class scores and box deltas for every anchor of every level.

    The base head itself is one 1x1 conv for the scores and one for the deltas on each
    input level; subclasses replace :meth:`_init_layers` and :meth:`forward_single`.

    Args:
        num_classes: object classes (background excluded).
        in_channels: channels of each input level.
        feat_channels: channels of the hidden convs of subclasses.
        anchor_generator, bbox_coder, loss_cls, loss_bbox: configs of the parts. A sigmoid
            ``loss_cls`` (``use_sigmoid=True``, or a loss that is always sigmoid such as a
            focal loss) scores each class independently (``num_classes`` outputs an anchor);
            a softmax one adds a background output, the last (``num_classes + 1``).
        reg_decoded_bbox: ``loss_bbox`` compares decoded boxes with the gt boxes (IoU-type
            losses) instead of deltas with encoded targets.
        train_cfg: ``dict(assigner=..., sampler=... (default PseudoSampler: every assigned
            anchor), allowed_border=-1, pos_weight=-1, loss_avg="batch")``; needed by
            :meth:`loss`. With a sampler the losses are averaged over the sampled anchors,
            with the ``PseudoSampler`` over the positives of the batch (at least 1);
            ``loss_avg="image"`` divides each image's losses by its own positives and averages
            over the images (torchvision's RetinaNet and FCOS).
        test_cfg: detection settings of :meth:`get_bboxes`: ``nms_pre`` (best anchors kept per
            level), ``score_thr``, ``nms`` (:func:`multiclass_nms`), ``max_per_img``,
            ``min_bbox_size``.

    forward: tuple of L (N, in_channels, H_l, W_l) -> (list of L (N, A * cls_out_channels,
    H_l, W_l) logits, list of L (N, 4 * A, H_l, W_l) deltas[, list of L (N, A, H_l, W_l)
    score factor logits, for a subclass with ``with_score_factors``, which also names a
    third loss and writes :meth:`loss_score_factor`]).
    """

    # the names of the losses in the detector's loss dict: classes, boxes[, score factors]
    loss_names = ("loss_cls", "loss_bbox")
    # every positive anchor gets class 0 whatever its gt's label (proposal heads)
    class_agnostic = False
    # the keys of train_cfg / test_cfg the head reads (a subclass that reads more adds them)
    train_cfg_schema = {"assigner": None, "sampler": None, "allowed_border": None,
                        "pos_weight": None, "debug": None, "loss_avg": None}  # fmt: skip

    def __init__(
        self,
        num_classes,
        in_channels,
        feat_channels=256,
        anchor_generator=None,
        bbox_coder=None,
        loss_cls=None,
        loss_bbox=None,
        reg_decoded_bbox=False,
        train_cfg=None,
        test_cfg=None,
    ):
        super().__init__()
        self.num_classes = int(num_classes)
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.prior_generator = build_from_cfg(
            anchor_generator or DEFAULT_ANCHOR_GENERATOR, PRIOR_GENERATORS
        )
        self.bbox_coder = build_from_cfg(bbox_coder or DEFAULT_BBOX_CODER, BBOX_CODERS)
        loss_cls = loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
        self.loss_cls = build_from_cfg(loss_cls, LOSSES)
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, "use_sigmoid", False))
        self.cls_out_channels = self.num_classes + (0 if self.use_sigmoid_cls else 1)
        self.loss_bbox = build_from_cfg(loss_bbox or dict(type="L1Loss", loss_weight=1.0), LOSSES)
        self.reg_decoded_bbox = bool(reg_decoded_bbox)
        self.train_cfg = train_cfg
        self.test_cfg = dict(self.default_test_cfg, **(test_cfg or {}))
        self.sampling = False
        if train_cfg is not None:
            self.assigner = build_from_cfg(train_cfg["assigner"], BBOX_ASSIGNERS)
            sampler = train_cfg.get("sampler") or dict(type="PseudoSampler")
            self.sampler = build_from_cfg(sampler, BBOX_SAMPLERS)
            self.sampling = sampler["type"] != "PseudoSampler"
            loss_avg = train_cfg.get("loss_avg", "batch")
            if loss_avg not in ("batch", "image") or (loss_avg == "image" and self.sampling):
                raise ValueError(
                    f"{type(self).__name__}: train_cfg.loss_avg must be 'batch' or 'image' "
                    f"(the latter with the PseudoSampler only), got {loss_avg!r}"
                )
        self.num_anchors = self.prior_generator.num_base_priors[0]
        if len(set(self.prior_generator.num_base_priors)) != 1:
            raise ValueError(
                f"{type(self).__name__}: every level needs the same number of anchors per cell"
            )
        self._init_layers()
        self.init_weights()

    @property
    def anchor_generator(self):
        """The prior generator (an anchor generator), by its earlier name."""
        return self.prior_generator

    # ------------------------------------------------------------------ what subclasses change
    def _init_layers(self):
        """The head's layers (the base: a 1x1 conv for the scores and one for the deltas)."""
        self.conv_cls = nn.Conv2d(self.in_channels, self.num_anchors * self.cls_out_channels, 1)
        self.conv_reg = nn.Conv2d(self.in_channels, self.num_anchors * self.bbox_pred_channels, 1)

    def init_weights(self):
        """Normal(0, 0.01) weights and zero biases for every conv of the head."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_single(self, x):
        """One level: (N, in_channels, H, W) -> ((N, A * cls_out_channels, H, W) logits,
        (N, A * 4, H, W) deltas)."""
        return self.conv_cls(x), self.conv_reg(x)

    # --------------------------------------------------------------------------- shared
    def _anchors(self, cls_scores):
        """Anchors of all levels concatenated: (A_total, 4), and per-level feature sizes."""
        featmap_sizes = [tuple(x.shape[-2:]) for x in cls_scores]
        per_level = self.get_priors(featmap_sizes, cls_scores[0].dtype, cls_scores[0].device)
        return torch.cat(per_level), featmap_sizes

    def _check_can_train(self):
        """Raise a clear error where the head was built without what training needs."""
        name = type(self).__name__
        if self.train_cfg is None:
            raise ValueError(f"{name}: computing the loss needs train_cfg (an assigner)")
        if getattr(self.sampler, "add_gt_as_proposals", False):
            raise ValueError(
                f"{name}: the sampler must not add gts as proposals (add_gt_as_proposals="
                "False): a dense head trains on anchors only"
            )

    def get_targets(
        self, anchors, featmap_sizes, batch_gt_instances, batch_img_metas,
        batch_gt_instances_ignore=None,
    ):  # fmt: skip
        """Training targets of the sampled anchors of every image (the only anchors the
        losses see).

        Args:
            anchors: (A_total, 4) anchors of all levels (:meth:`_anchors`).
            featmap_sizes: list of L (H_l, W_l).
            batch_gt_instances: N :class:`InstanceData` with ``bboxes`` (G_i, 4) and
                ``labels`` (G_i,) (not read by a ``class_agnostic`` head: every positive
                is class 0).
            batch_img_metas: N dicts (``img_shape``, ``pad_shape``).
            batch_gt_instances_ignore: optional N :class:`InstanceData` with ``bboxes``
                (K_i, 4) crowd boxes (or none).

        Returns:
            :class:`AnchorTargets` of S = sum over images of sampled anchors.
        """
        self._check_can_train()
        allowed_border = self.train_cfg.get("allowed_border", -1)
        pos_weight = self.train_cfg.get("pos_weight", -1)
        pos_weight = 1.0 if pos_weight <= 0 else float(pos_weight)
        pred_instances = InstanceData(priors=anchors)
        num_level_priors = [h * w * self.num_anchors for h, w in featmap_sizes]
        image_inds, anchor_inds, labels, label_weights, bbox_targets = [], [], [], [], []
        for i, (gt, meta) in enumerate(zip(batch_gt_instances, batch_img_metas)):
            pad_shape = meta.get("pad_shape", meta["img_shape"])
            valid = torch.cat(
                self.prior_generator.valid_flags(featmap_sizes, pad_shape[:2], anchors.device)
            )
            inside = anchor_inside_flags(anchors, valid, meta["img_shape"], allowed_border)
            ignore = None if batch_gt_instances_ignore is None else batch_gt_instances_ignore[i]
            assign_result = self.assigner.assign(
                pred_instances, gt, ignore, valid_mask=inside, num_level_priors=num_level_priors,
                img_meta=meta,
            )  # fmt: skip
            sampling = self.sampler.sample(assign_result, anchors, gt.bboxes)
            pos_inds, neg_inds = sampling.pos_inds, sampling.neg_inds
            num_pos, num_neg = pos_inds.numel(), neg_inds.numel()
            anchor_inds.append(torch.cat([pos_inds, neg_inds]))
            image_inds.append(torch.full((num_pos + num_neg,), i, device=anchors.device))
            if self.class_agnostic or gt.bboxes.numel() == 0:
                pos_labels = pos_inds.new_zeros(num_pos)
            else:
                pos_labels = gt.labels.to(pos_inds.device)[sampling.pos_assigned_gt_inds]
            labels.append(
                torch.cat([pos_labels.long(), pos_inds.new_full((num_neg,), self.num_classes)])
            )
            label_weights.append(
                torch.cat([anchors.new_full((num_pos,), pos_weight), anchors.new_ones(num_neg)])
            )
            if self.reg_decoded_bbox:
                pos_targets = sampling.pos_gt_bboxes.to(anchors.dtype)
            else:
                encoded = self.bbox_coder.encode(sampling.pos_bboxes, sampling.pos_gt_bboxes)
                pos_targets = encoded.to(anchors.dtype)
            bbox_targets.append(torch.cat([pos_targets, anchors.new_zeros(num_neg, 4)]))
        anchor_inds = torch.cat(anchor_inds)
        order = anchor_inds.argsort(stable=True)
        anchor_inds = anchor_inds[order]
        labels = torch.cat(labels)[order]
        positive = labels < self.num_classes
        image_inds = torch.cat(image_inds)[order]
        label_weights = torch.cat(label_weights)[order]
        bbox_weights = positive[:, None].expand(-1, 4).to(anchors.dtype)
        if self.train_cfg.get("loss_avg", "batch") == "image":
            # each image's losses over its own positives, then the mean over the images
            # (torchvision's normalisation): weights 1 / (positives of the image * images)
            num_images = len(batch_img_metas)
            per_image = anchors.new_zeros(num_images).index_add_(
                0, image_inds, positive.to(anchors.dtype)
            )
            sample_weight = 1.0 / (per_image.clamp(min=1) * num_images)[image_inds]
            label_weights = label_weights * sample_weight
            bbox_weights = bbox_weights * sample_weight[:, None]
            avg_factor = 1.0
        elif self.sampling:
            avg_factor = max(labels.numel(), 1)
        else:  # a tensor: no host sync
            avg_factor = positive.sum().clamp(min=1).to(anchors.dtype)
        return AnchorTargets(
            image_inds=image_inds,
            anchor_inds=anchor_inds,
            anchors=anchors[anchor_inds],
            labels=labels,
            label_weights=label_weights,
            bbox_targets=torch.cat(bbox_targets)[order],
            bbox_weights=bbox_weights,
            avg_factor=avg_factor,
        )

    def loss_of_samples(self, scores, deltas, targets, score_factors=None):
        """The losses from the predictions at the sampled anchors.

        Args:
            scores: (S, cls_out_channels) logits; deltas: (S, bbox_pred_channels) box
                predictions; score_factors: (S,) score factor logits (heads with
                ``with_score_factors``); in the order of ``targets`` (:class:`AnchorTargets`).

        Returns:
            dict of the losses named by ``loss_names`` (the third from
            :meth:`loss_score_factor`): the same values as losses over every anchor with the
            unsampled ones weighted 0.
        """
        loss_cls = self.loss_cls(
            scores, targets.labels, targets.label_weights, avg_factor=targets.avg_factor
        )
        boxes = deltas
        if self.reg_decoded_bbox:
            boxes = self.decode_bboxes(targets.anchors, deltas)
        loss_bbox = self.loss_bbox(
            boxes, targets.bbox_targets, targets.bbox_weights, avg_factor=targets.avg_factor
        )
        losses = (loss_cls, loss_bbox)
        if score_factors is not None:
            losses += (self.loss_score_factor(score_factors, deltas, targets),)
        if len(losses) != len(self.loss_names):
            raise ValueError(
                f"{type(self).__name__}: {len(losses)} losses for loss_names {self.loss_names}"
            )
        return dict(zip(self.loss_names, losses))

    def loss_score_factor(self, score_factors, deltas, targets):
        """The loss of the (S,) score factor logits at the sampled anchors (``deltas`` (S, 4)
        and :class:`AnchorTargets` as :meth:`loss_of_samples`): a head with
        ``with_score_factors`` writes it."""
        raise NotImplementedError(
            f"{type(self).__name__} has with_score_factors=True but no loss_score_factor"
        )

    def loss(self, cls_scores, bbox_preds, *args):
        """The losses of the outputs of :meth:`forward`, over all images and levels at once.

        Args:
            cls_scores, bbox_preds: the outputs of :meth:`forward`; args: the score factors
                (with ``with_score_factors``), then ``batch_gt_instances``,
                ``batch_img_metas`` and optionally ``batch_gt_instances_ignore``, as for
                :meth:`get_targets`.

        Returns:
            dict of the losses named by ``loss_names``.
        """
        _, _, score_factors, rest = self.split_outputs((cls_scores, bbox_preds, *args))
        anchors, featmap_sizes = self._anchors(cls_scores)
        targets = self.get_targets(anchors, featmap_sizes, *rest)
        at_samples = (targets.image_inds, targets.anchor_inds)
        scores = flatten_levels(cls_scores, self.cls_out_channels)[at_samples]
        deltas = flatten_levels(bbox_preds, self.bbox_pred_channels)[at_samples]
        if score_factors is not None:
            score_factors = flatten_levels(score_factors, 1)[at_samples][:, 0]
        return self.loss_of_samples(scores, deltas, targets, score_factors)
