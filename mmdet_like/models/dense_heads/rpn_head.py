"""Region Proposal Network head (Faster R-CNN): objectness and box deltas per anchor."""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.ops import batched_nms
from mmdet_like.registry import (
    ANCHOR_GENERATORS,
    BBOX_ASSIGNERS,
    BBOX_CODERS,
    BBOX_SAMPLERS,
    HEADS,
    LOSSES,
    build_from_cfg,
)

DEFAULT_ANCHOR_GENERATOR = dict(
    type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
)
DEFAULT_BBOX_CODER = dict(
    type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0, 1.0, 1.0, 1.0]
)
DEFAULT_TEST_CFG = dict(nms_pre=1000, nms_post=None, max_num=1000, nms_thr=0.7, min_bbox_size=0)


def flatten_levels(per_level, channels):
    """List over levels of (N, A * channels, H, W) -> (N, sum H * W * A, channels), in the
    anchors' order (location-major, the A anchors of a cell consecutive)."""
    return torch.cat(
        [x.permute(0, 2, 3, 1).reshape(x.size(0), -1, channels) for x in per_level], dim=1
    )


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
class RPNHead(nn.Module):
    """Shared 3x3 conv, then 1x1 convs for objectness (sigmoid) and box deltas per anchor.

    Args:
        in_channels: channels of each input level.
        feat_channels: channels of the shared conv.
        anchor_generator, bbox_coder, loss_cls, loss_bbox: configs of the parts
            (``loss_cls`` must use a sigmoid).
        train_cfg: ``dict(assigner=..., sampler=..., allowed_border=-1, pos_weight=-1)``;
            needed by :meth:`loss`.
        test_cfg: proposal settings for :meth:`get_proposals`: ``nms_pre`` (top-scoring
            anchors kept per level before NMS), ``nms_thr``, ``nms_post`` (per level after
            NMS, ``None``: no cap), ``max_num`` (per image), ``min_bbox_size``.

    forward: tuple of L (N, in_channels, H_l, W_l) -> (list of L (N, A, H_l, W_l) logits,
    list of L (N, 4 * A, H_l, W_l) deltas).
    """

    def __init__(
        self,
        in_channels,
        feat_channels=256,
        anchor_generator=None,
        bbox_coder=None,
        loss_cls=None,
        loss_bbox=None,
        train_cfg=None,
        test_cfg=None,
    ):
        super().__init__()
        self.anchor_generator = build_from_cfg(
            anchor_generator or DEFAULT_ANCHOR_GENERATOR, ANCHOR_GENERATORS
        )
        self.bbox_coder = build_from_cfg(bbox_coder or DEFAULT_BBOX_CODER, BBOX_CODERS)
        loss_cls = loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
        if not loss_cls.get("use_sigmoid", False):
            raise ValueError("RPNHead: loss_cls must be a sigmoid loss (use_sigmoid=True)")
        self.loss_cls = build_from_cfg(loss_cls, LOSSES)
        self.loss_bbox = build_from_cfg(loss_bbox or dict(type="L1Loss", loss_weight=1.0), LOSSES)
        self.train_cfg = train_cfg
        self.test_cfg = dict(DEFAULT_TEST_CFG, **(test_cfg or {}))
        if train_cfg is not None:
            self.assigner = build_from_cfg(train_cfg["assigner"], BBOX_ASSIGNERS)
            self.sampler = build_from_cfg(train_cfg["sampler"], BBOX_SAMPLERS)
        self.num_anchors = self.anchor_generator.num_base_anchors[0]
        if len(set(self.anchor_generator.num_base_anchors)) != 1:
            raise ValueError("RPNHead: every level needs the same number of anchors per cell")

        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, self.num_anchors, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, self.num_anchors * 4, 1)
        self.init_weights()

    def init_weights(self):
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats):
        cls_scores, bbox_preds = [], []
        for x in feats:
            x = F.relu(self.rpn_conv(x))
            cls_scores.append(self.rpn_cls(x))
            bbox_preds.append(self.rpn_reg(x))
        return cls_scores, bbox_preds

    def _anchors(self, cls_scores):
        """Anchors of all levels concatenated: (A_total, 4), and per-level feature sizes."""
        featmap_sizes = [tuple(x.shape[-2:]) for x in cls_scores]
        per_level = self.anchor_generator.grid_priors(
            featmap_sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device
        )
        return torch.cat(per_level), featmap_sizes

    def get_targets(self, anchors, featmap_sizes, gt_bboxes, img_metas, gt_bboxes_ignore=None):
        """Per-anchor training targets of every image, stacked.

        Returns:
            labels (N, A_total) float 1/0, label_weights (N, A_total), bbox_targets
            (N, A_total, 4), bbox_weights (N, A_total, 4), and the number of sampled anchors
            over the batch (a Python int).
        """
        if self.train_cfg is None:
            raise ValueError("RPNHead: computing the loss needs train_cfg (assigner, sampler)")
        allowed_border = self.train_cfg.get("allowed_border", -1)
        pos_weight = self.train_cfg.get("pos_weight", -1)
        pos_weight = 1.0 if pos_weight <= 0 else float(pos_weight)
        num_images = len(img_metas)
        labels = anchors.new_zeros((num_images, anchors.size(0)))
        label_weights = anchors.new_zeros((num_images, anchors.size(0)))
        bbox_targets = anchors.new_zeros((num_images, anchors.size(0), 4))
        bbox_weights = anchors.new_zeros((num_images, anchors.size(0), 4))
        num_samples = 0
        for i, meta in enumerate(img_metas):
            pad_shape = meta.get("pad_shape", meta["img_shape"])
            valid = torch.cat(
                self.anchor_generator.valid_flags(featmap_sizes, pad_shape[:2], anchors.device)
            )
            inside = anchor_inside_flags(anchors, valid, meta["img_shape"], allowed_border)
            ignore = None if gt_bboxes_ignore is None else gt_bboxes_ignore[i]
            assign_result = self.assigner.assign(anchors, gt_bboxes[i], ignore, valid_mask=inside)
            sampling = self.sampler.sample(assign_result, anchors, gt_bboxes[i])
            pos_inds, neg_inds = sampling.pos_inds, sampling.neg_inds
            num_samples += pos_inds.numel() + neg_inds.numel()
            labels[i, pos_inds] = 1.0
            label_weights[i, pos_inds] = pos_weight
            label_weights[i, neg_inds] = 1.0
            bbox_targets[i, pos_inds] = self.bbox_coder.encode(
                sampling.pos_bboxes, sampling.pos_gt_bboxes
            ).to(anchors.dtype)
            bbox_weights[i, pos_inds] = 1.0
        return labels, label_weights, bbox_targets, bbox_weights, num_samples

    def loss(self, cls_scores, bbox_preds, gt_bboxes, img_metas, gt_bboxes_ignore=None):
        """Objectness and box losses over all images and levels at once.

        Args:
            cls_scores, bbox_preds: the outputs of :meth:`forward`.
            gt_bboxes: list of N (G_i, 4) boxes.
            img_metas: list of N dicts with ``img_shape`` (h, w, ...) and ``pad_shape``.
            gt_bboxes_ignore: optional list of N (K_i, 4) crowd boxes.

        Returns:
            ``dict(loss_rpn_cls=scalar, loss_rpn_bbox=scalar)``.
        """
        if self.train_cfg is None:
            raise ValueError("RPNHead: computing the loss needs train_cfg (assigner, sampler)")
        if self.sampler.add_gt_as_proposals:
            raise ValueError("RPNHead: the sampler must not add gts as proposals (anchors only)")
        anchors, featmap_sizes = self._anchors(cls_scores)
        labels, label_weights, bbox_targets, bbox_weights, num_samples = self.get_targets(
            anchors, featmap_sizes, gt_bboxes, img_metas, gt_bboxes_ignore
        )
        scores = flatten_levels(cls_scores, 1).reshape(-1)
        deltas = flatten_levels(bbox_preds, 4).reshape(-1, 4)
        avg_factor = max(num_samples, 1)
        loss_cls = self.loss_cls(
            scores, labels.reshape(-1), label_weights.reshape(-1), avg_factor=avg_factor
        )
        loss_bbox = self.loss_bbox(
            deltas, bbox_targets.reshape(-1, 4), bbox_weights.reshape(-1, 4), avg_factor=avg_factor
        )
        return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=loss_bbox)

    @torch.no_grad()
    def get_proposals(self, cls_scores, bbox_preds, img_metas, cfg=None):
        """Proposals of every image: list of N (n_i, 5) ``[x1, y1, x2, y2, score]``, in
        descending score order, in the coordinates of the (resized) input image.

        ``cfg`` overrides ``test_cfg`` keys (e.g. the detector's training-time proposal
        settings).
        """
        cfg = dict(self.test_cfg, **(cfg or {}))
        anchors_per_level = self.anchor_generator.grid_priors(
            [tuple(x.shape[-2:]) for x in cls_scores],
            dtype=cls_scores[0].dtype,
            device=cls_scores[0].device,
        )
        scores, deltas, anchors, levels = [], [], [], []
        for level, (cls, reg, level_anchors) in enumerate(
            zip(cls_scores, bbox_preds, anchors_per_level)
        ):
            level_scores = flatten_levels([cls], 1).squeeze(-1).sigmoid()  # (N, K_l)
            level_deltas = flatten_levels([reg], 4)  # (N, K_l, 4)
            num_pre = level_scores.size(1)
            if cfg["nms_pre"] and 0 < cfg["nms_pre"] < num_pre:
                num_pre = cfg["nms_pre"]
                level_scores, top = level_scores.topk(num_pre, dim=1)
                level_deltas = level_deltas.gather(1, top[..., None].expand(-1, -1, 4))
                level_anchors = level_anchors[top]  # (N, nms_pre, 4)
            else:
                level_anchors = level_anchors[None].expand(level_scores.size(0), -1, -1)
            scores.append(level_scores)
            deltas.append(level_deltas)
            anchors.append(level_anchors)
            levels.append(torch.full((num_pre,), level, device=level_scores.device))
        scores, levels = torch.cat(scores, 1), torch.cat(levels)
        boxes = self.bbox_coder.decode(torch.cat(anchors, 1), torch.cat(deltas, 1))
        return [
            self._proposals_of_image(boxes[i], scores[i], levels, meta["img_shape"], cfg)
            for i, meta in enumerate(img_metas)
        ]

    def _proposals_of_image(self, boxes, scores, levels, img_shape, cfg):
        """(K, 4) decoded boxes, (K,) scores, (K,) levels -> (n, 5) proposals after NMS."""
        height, width = img_shape[0], img_shape[1]
        x1, y1, x2, y2 = boxes.unbind(-1)
        boxes = torch.stack(
            [x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)],
            dim=-1,
        )
        if cfg["min_bbox_size"] is not None and cfg["min_bbox_size"] >= 0:
            size = cfg["min_bbox_size"]
            keep = ((boxes[:, 2] - boxes[:, 0]) > size) & ((boxes[:, 3] - boxes[:, 1]) > size)
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, cfg["nms_thr"])  # descending scores
        if cfg["nms_post"]:
            # rank of each kept box within its level, vectorised over levels
            onehot = F.one_hot(levels[keep], self.anchor_generator.num_levels)
            rank = (onehot.cumsum(0) * onehot).sum(1)  # 1-based
            keep = keep[rank <= cfg["nms_post"]]
        keep = keep[: cfg["max_num"]]
        return torch.cat([boxes[keep], scores[keep, None]], dim=1)
