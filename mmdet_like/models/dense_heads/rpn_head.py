"""Region Proposal Network head (Faster R-CNN): objectness and box deltas per anchor.

An :class:`~mmdet_like.models.dense_heads.AnchorHead` with one class-agnostic sigmoid
score an anchor, in proposal mode (:meth:`RPNHead.get_proposals`), and the option of
sampled-anchor training (:meth:`RPNHead.predict_at`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.dense_heads.anchor_head import (
    AnchorHead,
    AnchorTargets,
    anchor_inside_flags,
)
from mmdet_like.models.dense_heads.base_dense_head import flatten_levels
from mmdet_like.models.dense_heads.sampled_anchors import add_at_cells, gather_cells
from mmdet_like.models.layers import build_norm_layer
from mmdet_like.ops import batched_nms
from mmdet_like.registry import HEADS
from mmdet_like.structures.bbox import clip_bboxes
from mmdet_like.structures.instance_data import InstanceData
from mmdet_like.structures.instances import unpack_gt_instances

DEFAULT_TEST_CFG = dict(nms_pre=1000, nms_post=None, max_num=1000, nms_thr=0.7, min_bbox_size=0)
# the targets of the sampled anchors (the name of earlier releases)
SampledAnchorTargets = AnchorTargets

__all__ = [
    "RPNHead",
    "SampledAnchorTargets",
    "add_at_cells",
    "anchor_inside_flags",
    "flatten_levels",
    "gather_cells",
]


@HEADS.register()
class RPNHead(AnchorHead):
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
            sampled anchors only (:meth:`predict_at`; less work); False runs it densely and
            takes the losses of :meth:`forward`'s outputs (:meth:`loss`). Both give the same
            losses and gradients. ``None`` (the default): True without ``norm_cfg``, False
            with it.
        norm_cfg: norm after the shared conv (before its ReLU; the conv then has no bias),
            e.g. ``dict(type="GN", num_groups=32)``. A norm sees whole feature maps (batch
            or group statistics), which the cells of :meth:`predict_at` are not, so a norm
            trains densely: ``sampled_anchor_training=True`` with a norm is an error.

    Targets (:class:`AnchorTargets`): label 0 for positives, 1 (the background) for
    negatives. forward: tuple of L (N, in_channels, H_l, W_l) -> (list of L (N, A, H_l,
    W_l) logits, list of L (N, 4 * A, H_l, W_l) deltas).
    """

    loss_names = ("loss_rpn_cls", "loss_rpn_bbox")
    class_agnostic = True
    test_cfg_schema = {key: None for key in DEFAULT_TEST_CFG}
    default_test_cfg = DEFAULT_TEST_CFG

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
        sampled_anchor_training=None,
        norm_cfg=None,
    ):
        loss_cls = loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
        if not loss_cls.get("use_sigmoid", False):
            raise ValueError("RPNHead: loss_cls must be a sigmoid loss (use_sigmoid=True)")
        if train_cfg is not None and "sampler" not in train_cfg:
            raise ValueError("RPNHead: train_cfg needs a sampler (e.g. RandomSampler)")
        if norm_cfg is not None and sampled_anchor_training:
            raise ValueError(
                "RPNHead: sampled_anchor_training=True runs the shared conv at the sampled "
                "anchors' cells only, where norm_cfg's batch or group statistics cannot be "
                "computed; drop sampled_anchor_training (a normed head trains densely) or "
                "norm_cfg"
            )
        if sampled_anchor_training is None:
            sampled_anchor_training = norm_cfg is None
        self.sampled_anchor_training = bool(sampled_anchor_training)
        self.norm_cfg = norm_cfg
        super().__init__(
            num_classes=1, in_channels=in_channels, feat_channels=feat_channels,
            anchor_generator=anchor_generator, bbox_coder=bbox_coder, loss_cls=loss_cls,
            loss_bbox=loss_bbox, train_cfg=train_cfg, test_cfg=test_cfg,
        )  # fmt: skip

    def _init_layers(self):
        self.rpn_conv = nn.Conv2d(
            self.in_channels, self.feat_channels, 3, padding=1, bias=self.norm_cfg is None
        )
        self.rpn_norm = (
            None if self.norm_cfg is None else build_norm_layer(self.norm_cfg, self.feat_channels)
        )
        self.rpn_cls = nn.Conv2d(self.feat_channels, self.num_anchors, 1)
        self.rpn_reg = nn.Conv2d(self.feat_channels, self.num_anchors * 4, 1)

    def forward_single(self, x):
        x = self.rpn_conv(x)
        if self.rpn_norm is not None:
            x = self.rpn_norm(x)
        x = F.relu(x)
        return self.rpn_cls(x), self.rpn_reg(x)

    def loss_of_samples(self, scores, deltas, targets, score_factors=None):
        """As :meth:`AnchorHead.loss_of_samples`; ``scores`` may be (S,) (one class)."""
        if scores.dim() == 1:
            scores = scores[:, None]
        return super().loss_of_samples(scores, deltas, targets, score_factors)

    def forward_train(self, feats, data_samples, proposal_cfg=None):
        """Training: the losses and, with ``proposal_cfg``, the proposals.

        With ``sampled_anchor_training`` (the default without ``norm_cfg``): the same losses
        and gradients as :meth:`loss` on :meth:`forward`, with less work: the losses reach only
        the sampled anchors (S, a few hundred per image), so the head runs over whole feature
        maps without autograd (for the proposals and the anchors), and again with autograd at the
        sampled anchors' cells only (:meth:`predict_at`). The dense backward pass of the shared
        3x3 conv, most of the head's cost, is never run. Without it, :meth:`loss` on
        :meth:`forward`'s outputs.

        Args:
            feats: tuple of L (N, C, H_l, W_l) features.
            data_samples: N :class:`DetDataSample` (``gt_instances.bboxes``, the
                ``ignored_instances``, the meta; labels are not read: proposals are
                class-agnostic).
            proposal_cfg: settings for :meth:`get_proposals` (``None``: no proposals).

        Returns:
            (losses dict, N proposal :class:`InstanceData` or ``None``).
        """
        if not self.sampled_anchor_training:
            return super().forward_train(feats, data_samples, proposal_cfg)
        self._check_can_train()
        batch_gt_instances, batch_gt_ignore, batch_img_metas = unpack_gt_instances(data_samples)
        with torch.no_grad():
            cls_scores, bbox_preds = self(feats)
        anchors, featmap_sizes = self._anchors(cls_scores)
        targets = self.get_targets(
            anchors, featmap_sizes, batch_gt_instances, batch_img_metas, batch_gt_ignore
        )
        scores, deltas = self.predict_at(feats, targets.image_inds, targets.anchor_inds)
        losses = self.loss_of_samples(scores, deltas, targets)
        proposals = None
        if proposal_cfg is not None:
            proposals = self.get_proposals(cls_scores, bbox_preds, batch_img_metas, proposal_cfg)
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
        if self.rpn_norm is not None:
            raise ValueError(
                "RPNHead: predict_at cannot apply norm_cfg's norm at single cells; "
                "a head with norm_cfg trains densely (sampled_anchor_training=False)"
            )
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
        """Proposals of every image: N :class:`InstanceData` with ``bboxes`` (n_i, 4) and
        ``scores`` (n_i,), in descending score order, in the coordinates of the (resized)
        input image.

        ``cfg`` overrides ``test_cfg`` keys (e.g. the detector's training-time proposal
        settings).
        """
        cfg = dict(self.test_cfg, **(cfg or {}))
        scores, deltas, anchors, levels = [], [], [], []
        candidates = self._level_candidates(cls_scores, bbox_preds, cfg["nms_pre"])
        for level, (level_scores, level_deltas, level_anchors) in enumerate(candidates):
            scores.append(level_scores[..., 0])  # (N, k_l): the one objectness score
            deltas.append(level_deltas)
            anchors.append(level_anchors)
            levels.append(torch.full((level_scores.size(1),), level, device=level_scores.device))
        scores, levels = torch.cat(scores, 1), torch.cat(levels)
        boxes = self.decode_bboxes(torch.cat(anchors, 1), torch.cat(deltas, 1))
        return [
            self._proposals_of_image(boxes[i], scores[i], levels, meta["img_shape"], cfg)
            for i, meta in enumerate(img_metas)
        ]

    def _proposals_of_image(self, boxes, scores, levels, img_shape, cfg):
        """(K, 4) decoded boxes, (K,) scores, (K,) levels -> the proposals after NMS."""
        boxes = clip_bboxes(boxes, img_shape)
        if cfg["min_bbox_size"] is not None and cfg["min_bbox_size"] >= 0:
            size = cfg["min_bbox_size"]
            keep = ((boxes[:, 2] - boxes[:, 0]) > size) & ((boxes[:, 3] - boxes[:, 1]) > size)
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, cfg["nms_thr"],
                           num_categories=self.prior_generator.num_levels)  # fmt: skip
        if cfg["nms_post"]:
            # rank of each kept box within its level, vectorised over levels
            onehot = F.one_hot(levels[keep], self.prior_generator.num_levels)
            rank = (onehot.cumsum(0) * onehot).sum(1)  # 1-based
            keep = keep[rank <= cfg["nms_post"]]
        keep = keep[: cfg["max_num"]]
        return InstanceData(bboxes=boxes[keep], scores=scores[keep])
