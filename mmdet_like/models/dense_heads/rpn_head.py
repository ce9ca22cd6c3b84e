"""Region Proposal Network head (Faster R-CNN): objectness and box deltas per anchor."""

from typing import NamedTuple

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


class SampledAnchorTargets(NamedTuple):
    """Training targets of the S sampled anchors of a batch (:meth:`RPNHead.get_targets`)."""

    image_inds: torch.Tensor  # (S,) image of each sampled anchor
    anchor_inds: torch.Tensor  # (S,) index among all levels' anchors, sorted
    labels: torch.Tensor  # (S,) 1.0 positive, 0.0 negative
    label_weights: torch.Tensor  # (S,)
    bbox_targets: torch.Tensor  # (S, 4) encoded deltas (0 for negatives)
    bbox_weights: torch.Tensor  # (S, 4) 1.0 for positives


def flatten_levels(per_level, channels):
    """List over levels of (N, A * channels, H, W) -> (N, sum H * W * A, channels), in the
    anchors' order (location-major, the A anchors of a cell consecutive)."""
    return torch.cat(
        [x.permute(0, 2, 3, 1).reshape(x.size(0), -1, channels) for x in per_level], dim=1
    )


def add_at_cells(values, image, row, col, feature_shape, fixed_order):
    """A (N, C, H, W) tensor of zeros plus ``values`` at cells (repeated cells add up).

    Args:
        values: (*index shape, C); image, row, col: integer tensors broadcasting to the
            index shape; feature_shape: (N, C, H, W).
        fixed_order: add with ``index_add_`` (the same order in every run; the CPU's choice)
            rather than ``index_put_(accumulate=True)`` (parallel atomic adds; deterministic
            on a GPU under ``torch.use_deterministic_algorithms``).
    """
    num_images, channels, height, width = feature_shape
    values = values.reshape(-1, channels)
    image, row, col = (t.expand(row.shape).reshape(-1) for t in (image, row, col))
    if fixed_order:
        out = values.new_zeros(num_images * height * width, channels)
        out.index_add_(0, (image * height + row) * width + col, values)
        return out.view(num_images, height, width, channels).permute(0, 3, 1, 2).contiguous()
    out = values.new_zeros(feature_shape)
    out.permute(0, 2, 3, 1).index_put_((image, row, col), values, accumulate=True)
    return out


class _GatherCells(torch.autograd.Function):
    """``x[image, :, row, col]``: (N, C, H, W) features at cells -> (*index shape, C).

    Its backward pass (:func:`add_at_cells`) adds the gradients of repeated cells in a fixed
    order on the CPU, where autograd's own backward of indexing adds them with parallel atomic
    adds in an order that changes from run to run: training stays reproducible.
    """

    @staticmethod
    def forward(ctx, x, image, row, col):
        ctx.save_for_backward(image, row, col)
        ctx.feature_shape = x.shape
        return x[image, :, row, col]

    @staticmethod
    def backward(ctx, grad):
        image, row, col = ctx.saved_tensors
        fixed_order = grad.device.type == "cpu"
        grad_x = add_at_cells(grad, image, row, col, ctx.feature_shape, fixed_order)
        return grad_x, None, None, None


def gather_cells(x, image, row, col):
    """(N, C, H, W) features at cells -> (*index shape, C), with a reproducible backward pass
    (:class:`_GatherCells`); image, row, col broadcast to the index shape."""
    return _GatherCells.apply(x, image, row, col)


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
        sampled_anchor_training: :meth:`forward_train` runs the head with autograd at the
            sampled anchors only (:meth:`predict_at`; the default, less work); False runs it
            densely and takes the losses of :meth:`forward`'s outputs (:meth:`loss`). Both
            give the same losses and gradients.

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
        sampled_anchor_training=True,
    ):
        super().__init__()
        self.sampled_anchor_training = bool(sampled_anchor_training)
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
        """Training targets of the sampled anchors of every image (the only anchors the losses
        see: every other anchor has weight 0).

        Args:
            anchors: (A_total, 4) anchors of all levels (:meth:`_anchors`).
            featmap_sizes: list of L (H_l, W_l).
            gt_bboxes: list of N (G_i, 4); img_metas: list of N dicts; gt_bboxes_ignore:
                optional list of N (K_i, 4).

        Returns:
            :class:`SampledAnchorTargets` of S = sum over images of sampled anchors, sorted by
            anchor index (so by level).
        """
        self._check_can_train()
        allowed_border = self.train_cfg.get("allowed_border", -1)
        pos_weight = self.train_cfg.get("pos_weight", -1)
        pos_weight = 1.0 if pos_weight <= 0 else float(pos_weight)
        image_inds, anchor_inds, labels, label_weights, bbox_targets = [], [], [], [], []
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
            num_pos, num_neg = pos_inds.numel(), neg_inds.numel()
            anchor_inds.append(torch.cat([pos_inds, neg_inds]))
            image_inds.append(torch.full((num_pos + num_neg,), i, device=anchors.device))
            labels.append(torch.cat([anchors.new_ones(num_pos), anchors.new_zeros(num_neg)]))
            label_weights.append(
                torch.cat([anchors.new_full((num_pos,), pos_weight), anchors.new_ones(num_neg)])
            )
            encoded = self.bbox_coder.encode(sampling.pos_bboxes, sampling.pos_gt_bboxes)
            bbox_targets.append(
                torch.cat([encoded.to(anchors.dtype), anchors.new_zeros(num_neg, 4)])
            )
        anchor_inds = torch.cat(anchor_inds)
        order = anchor_inds.argsort(stable=True)
        labels = torch.cat(labels)[order]
        return SampledAnchorTargets(
            image_inds=torch.cat(image_inds)[order],
            anchor_inds=anchor_inds[order],
            labels=labels,
            label_weights=torch.cat(label_weights)[order],
            bbox_targets=torch.cat(bbox_targets)[order],
            bbox_weights=labels[:, None].expand(-1, 4).clone(),
        )

    def loss_of_samples(self, scores, deltas, targets):
        """Losses from the predictions at the sampled anchors.

        Args:
            scores: (S,) objectness logits; deltas: (S, 4) box deltas, in the order of
                ``targets`` (:class:`SampledAnchorTargets`).

        Returns:
            ``dict(loss_rpn_cls=scalar, loss_rpn_bbox=scalar)``, averaged over the S samples
            (the same values as a loss over every anchor with the unsampled ones weighted 0).
        """
        avg_factor = max(targets.labels.numel(), 1)
        loss_cls = self.loss_cls(
            scores, targets.labels, targets.label_weights, avg_factor=avg_factor
        )
        loss_bbox = self.loss_bbox(
            deltas, targets.bbox_targets, targets.bbox_weights, avg_factor=avg_factor
        )
        return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=loss_bbox)

    def _check_can_train(self):
        """Raise a clear error where the head was built without what training needs."""
        if self.train_cfg is None:
            raise ValueError("RPNHead: computing the loss needs train_cfg (assigner, sampler)")
        if self.sampler.add_gt_as_proposals:
            raise ValueError("RPNHead: the sampler must not add gts as proposals (anchors only)")

    def loss(self, cls_scores, bbox_preds, gt_bboxes, img_metas, gt_bboxes_ignore=None):
        """Objectness and box losses of the outputs of :meth:`forward`, over all images and
        levels at once.

        Args:
            cls_scores, bbox_preds: the outputs of :meth:`forward`.
            gt_bboxes: list of N (G_i, 4) boxes.
            img_metas: list of N dicts with ``img_shape`` (h, w, ...) and ``pad_shape``.
            gt_bboxes_ignore: optional list of N (K_i, 4) crowd boxes.

        Returns:
            ``dict(loss_rpn_cls=scalar, loss_rpn_bbox=scalar)``.
        """
        anchors, featmap_sizes = self._anchors(cls_scores)
        targets = self.get_targets(anchors, featmap_sizes, gt_bboxes, img_metas, gt_bboxes_ignore)
        scores = flatten_levels(cls_scores, 1)[targets.image_inds, targets.anchor_inds, 0]
        deltas = flatten_levels(bbox_preds, 4)[targets.image_inds, targets.anchor_inds]
        return self.loss_of_samples(scores, deltas, targets)

    def forward_train(self, feats, gt_bboxes, img_metas, gt_bboxes_ignore=None, proposal_cfg=None):
        """Training: the losses and, with ``proposal_cfg``, the proposals.

        With ``sampled_anchor_training`` (the default): the same losses and gradients as
        :meth:`loss` on :meth:`forward`, with less work: the losses reach only the sampled
        anchors (S, a few hundred per image), so the head runs over whole feature maps without
        autograd (for the proposals and the anchors), and again with autograd at the sampled
        anchors' cells only (:meth:`predict_at`). The dense backward pass of the shared 3x3
        conv, most of the head's cost, is never run. Without it, :meth:`loss` on
        :meth:`forward`'s outputs.

        Args:
            feats: tuple of L (N, C, H_l, W_l) features.
            gt_bboxes, img_metas, gt_bboxes_ignore: as for :meth:`loss`.
            proposal_cfg: settings for :meth:`get_proposals` (``None``: no proposals).

        Returns:
            (losses dict, list of N (n_i, 5) proposals or ``None``).
        """
        self._check_can_train()
        if self.sampled_anchor_training:
            with torch.no_grad():
                cls_scores, bbox_preds = self(feats)
            anchors, featmap_sizes = self._anchors(cls_scores)
            targets = self.get_targets(
                anchors, featmap_sizes, gt_bboxes, img_metas, gt_bboxes_ignore
            )
            scores, deltas = self.predict_at(feats, targets.image_inds, targets.anchor_inds)
            losses = self.loss_of_samples(scores, deltas, targets)
        else:
            cls_scores, bbox_preds = self(feats)
            losses = self.loss(cls_scores, bbox_preds, gt_bboxes, img_metas, gt_bboxes_ignore)
            cls_scores = [x.detach() for x in cls_scores]
            bbox_preds = [x.detach() for x in bbox_preds]
        proposals = None
        if proposal_cfg is not None:
            proposals = self.get_proposals(cls_scores, bbox_preds, img_metas, proposal_cfg)
        return losses, proposals

    def predict_at(self, feats, image_inds, anchor_inds):
        """The head's outputs at some anchors, computed at their cells only (with autograd).

        Args:
            feats: tuple of L (N, C, H_l, W_l) features.
            image_inds: (S,) image of each anchor; anchor_inds: (S,) index among all levels'
                anchors (location-major per level, levels concatenated), sorted.

        Returns:
            (S,) objectness logits and (S, 4) deltas, equal to :meth:`forward`'s at those
            anchors.
        """
        num_anchors = self.num_anchors
        sizes = [tuple(x.shape[-2:]) for x in feats]
        level_counts = torch.tensor([h * w * num_anchors for h, w in sizes])
        level_ends = level_counts.cumsum(0)
        level_starts = (level_ends - level_counts).tolist()
        level_of_anchor = torch.bucketize(
            anchor_inds, level_ends.to(anchor_inds.device), right=True
        )
        per_level = torch.bincount(level_of_anchor, minlength=len(feats)).tolist()
        conv = self.rpn_conv
        kernel_h, kernel_w = conv.kernel_size
        pad_h, pad_w = conv.padding
        dy = torch.arange(kernel_h, device=anchor_inds.device) - pad_h
        dx = torch.arange(kernel_w, device=anchor_inds.device) - pad_w
        dy, dx = dy.repeat_interleave(kernel_w), dx.repeat(kernel_h)  # (kh * kw,)
        scores, deltas = [], []
        for x, (height, width), level_start, images, anchors in zip(
            feats, sizes, level_starts, image_inds.split(per_level), anchor_inds.split(per_level)
        ):
            if images.numel() == 0:
                continue
            local = anchors - level_start
            cell, anchor_of_cell = local // num_anchors, local % num_anchors
            row = (cell // width)[:, None] + dy  # (s, kh * kw)
            col = (cell % width)[:, None] + dx
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            patches = gather_cells(
                x, images[:, None], row.clamp(0, height - 1), col.clamp(0, width - 1)
            )
            patches = patches * inside[..., None].to(patches.dtype)  # (s, kh * kw, C)
            hidden = F.relu(
                F.linear(patches.transpose(1, 2).flatten(1), conv.weight.flatten(1), conv.bias)
            )  # (s, feat_channels)
            rows = torch.arange(hidden.size(0), device=hidden.device)
            cls = F.linear(hidden, self.rpn_cls.weight.flatten(1), self.rpn_cls.bias)
            reg = F.linear(hidden, self.rpn_reg.weight.flatten(1), self.rpn_reg.bias)
            scores.append(cls[rows, anchor_of_cell])
            deltas.append(reg.view(-1, num_anchors, 4)[rows, anchor_of_cell])
        if not scores:  # no sampled anchor: empty predictions, still part of the graph
            zero = self.rpn_cls.weight.sum() * 0
            return zero.expand(0), zero.expand(0, 4)
        return torch.cat(scores), torch.cat(deltas)

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
