"""Cascade R-CNN's RoI head (Cai and Vasconcelos 2018): box stages trained at rising IoU
thresholds, each refining the boxes of the one before.

Stage ``t`` samples its RoIs among the boxes that stage ``t - 1`` regressed (the RPN's
proposals for the first stage; the ground truth is added as proposals at every stage), with
its own assigner (IoU 0.5, 0.6, 0.7 in the published setting) and its own box coder (target
stds halved from stage to stage, as the regressed boxes sit closer to their objects). The
losses of stage ``t`` are weighted ``stage_loss_weights[t]`` and logged as ``s{t}.loss_cls``,
``s{t}.loss_bbox``, ``s{t}.acc``. At test time the RPN's proposals go through every stage,
each stage classifying the boxes the one before regressed: the class probabilities of all
stages are averaged, and the boxes are those the last stage regresses (detectron2's and the
paper's test rule); the mask branch (Cascade Mask R-CNN) runs once, on the final detections
and, in training, on the last stage's positives.
"""

import copy

import torch

from mmdet_like.models.roi_heads.standard_roi_head import (
    DEFAULT_TEST_CFG,
    BaseRoIHead,
    assign_and_sample,
)
from mmdet_like.registry import HEADS, ROI_EXTRACTORS, build_from_cfg
from mmdet_like.structures.bbox import bbox2roi
from mmdet_like.structures.instances import unpack_gt_instances

# the published Cascade R-CNN box coders, one per stage
CASCADE_TARGET_STDS = (
    [0.1, 0.1, 0.2, 0.2],
    [0.05, 0.05, 0.1, 0.1],
    [0.033, 0.033, 0.067, 0.067],
)


def _merged(base, override):
    """``base`` with ``override``'s keys replaced, nested dicts merged key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@HEADS.register()
class CascadeRoIHead(BaseRoIHead):
    """``num_stages`` box stages (and an optional mask branch on the last stage).

    Args:
        num_stages: box stages (3 in the published models).
        stage_loss_weights: weight of each stage's losses (1, 0.5, 0.25).
        bbox_head: ONE box head config that every stage uses (so ``num_classes`` is one line
            of a user's config), or a list of ``num_stages`` configs (mmdetection's form;
            their ``num_classes`` must agree).
        stage_bbox_heads: optional list of ``num_stages`` dicts merged into ``bbox_head`` for
            each stage (nested dicts key by key), e.g. ``[dict(bbox_coder=dict(
            target_stds=[0.1, 0.1, 0.2, 0.2])), ...]``.
        bbox_roi_extractor: one extractor config for every stage (or a list, one per stage).
        mask_roi_extractor, mask_head: the mask branch (on the last stage).
        train_cfg: ``train_cfg.rcnn``: a list of ``num_stages`` dicts (``assigner``,
            ``sampler``, ``pos_weight``; ``mask_size`` of the last one serves the mask head).
        test_cfg: as :class:`StandardRoIHead`'s.
    """

    default_test_cfg = DEFAULT_TEST_CFG

    def __init__(
        self,
        num_stages,
        stage_loss_weights,
        bbox_roi_extractor,
        bbox_head,
        stage_bbox_heads=None,
        mask_roi_extractor=None,
        mask_head=None,
        shared_head=None,
        share_roi_extractor=False,
        train_cfg=None,
        test_cfg=None,
        keypoint_roi_extractor=None,
        keypoint_head=None,
    ):
        if num_stages < 1:
            raise ValueError(f"CascadeRoIHead: num_stages must be at least 1, got {num_stages}")
        if len(stage_loss_weights) != num_stages:
            raise ValueError(
                f"CascadeRoIHead: stage_loss_weights has {len(stage_loss_weights)} entries for "
                f"num_stages={num_stages}; give one weight per stage"
            )
        if share_roi_extractor or shared_head is not None:
            raise ValueError(
                "CascadeRoIHead: shared_head / share_roi_extractor are not supported; give "
                "the mask branch its own mask_roi_extractor"
            )
        if keypoint_head is not None:
            raise ValueError(
                "CascadeRoIHead: a keypoint branch is not supported (use KeypointRCNN)"
            )
        self.num_stages = num_stages
        self.stage_loss_weights = [float(w) for w in stage_loss_weights]
        self.stage_bbox_heads = stage_bbox_heads
        if train_cfg is not None and (
            not isinstance(train_cfg, (list, tuple)) or len(train_cfg) != num_stages
        ):
            raise ValueError(
                f"CascadeRoIHead: train_cfg.rcnn must be a list of {num_stages} dicts (assigner, "
                "sampler, pos_weight), one per stage"
            )
        super().__init__(
            bbox_roi_extractor, bbox_head, mask_roi_extractor, mask_head, None, False,
            train_cfg, test_cfg,
        )  # fmt: skip

    def _per_stage(self, cfg, name):
        """``cfg`` (one dict or a list of ``num_stages``) -> a list of ``num_stages`` dicts."""
        if isinstance(cfg, (list, tuple)):
            if len(cfg) != self.num_stages:
                raise ValueError(
                    f"CascadeRoIHead: {name} is a list of {len(cfg)} configs for "
                    f"num_stages={self.num_stages}"
                )
            return [dict(c) for c in cfg]
        return [dict(cfg) for _ in range(self.num_stages)]

    def init_bbox_head(self, bbox_roi_extractor, bbox_head):
        extractors = self._per_stage(bbox_roi_extractor, "bbox_roi_extractor")
        heads = self._per_stage(bbox_head, "bbox_head")
        if self.stage_bbox_heads is not None:
            overrides = self._per_stage(self.stage_bbox_heads, "stage_bbox_heads")
            heads = [_merged(head, override) for head, override in zip(heads, overrides)]
        self.bbox_roi_extractor = torch.nn.ModuleList(
            build_from_cfg(c, ROI_EXTRACTORS) for c in extractors
        )
        self.bbox_head = torch.nn.ModuleList(build_from_cfg(c, HEADS) for c in heads)
        classes = {head.num_classes for head in self.bbox_head}
        if len(classes) != 1:
            raise ValueError(
                f"CascadeRoIHead: the stages' bbox heads disagree on num_classes {sorted(classes)}"
            )

    @property
    def num_classes(self):
        return self.bbox_head[-1].num_classes

    def init_weights(self):
        for head in self.bbox_head:
            head.init_weights()
        if self.with_mask:
            self.mask_head.init_weights()

    # ---------------------------------------------------------------------------- stages
    def _bbox_forward(self, stage, x, rois):
        """(K, 5) RoIs -> stage ``stage``'s (K, num_classes + 1) logits and (K, 4 or
        4 * num_classes) deltas."""
        return self.bbox_head[stage](self.bbox_roi_extractor[stage](x, rois))

    def _regressed(self, stage, rois, cls_score, bbox_pred, img_shapes=None):
        """The boxes stage ``stage`` regresses from its (K, 5) RoIs: (K, 4), each RoI's
        class-agnostic box (or, for a class-specific head, the box of its best object
        class), clipped to its image when ``img_shapes`` (one ``(h, w)`` per image) are
        given. Detached: the next stage's proposals carry no gradient."""
        head = self.bbox_head[stage]
        deltas = bbox_pred.detach()
        if not head.reg_class_agnostic:
            best = cls_score.detach()[:, : head.num_classes].argmax(1)
            rows = torch.arange(deltas.size(0), device=deltas.device)
            deltas = deltas.view(deltas.size(0), -1, 4)[rows, best]
        boxes = head.bbox_coder.decode(rois[:, 1:5], deltas)
        if img_shapes is not None and len(img_shapes) == 1:
            # one image: its sides as scalars (a traced program keeps them symbolic)
            height, width = img_shapes[0][0], img_shapes[0][1]
            x1, y1, x2, y2 = boxes.unbind(1)
            return torch.stack([x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width),
                                y2.clamp(0, height)], 1)  # fmt: skip
        if img_shapes is not None:
            limits = boxes.new_tensor([[s[1], s[0], s[1], s[0]] for s in img_shapes])
            limits = limits[rois[:, 0].long()]
            boxes = torch.minimum(boxes.clamp(min=0), limits)
        return boxes

    def forward_train(self, x, proposals, data_samples):
        """Losses of every stage (``s{t}.loss_cls``, ``s{t}.loss_bbox``, ``s{t}.acc``, the
        losses weighted by ``stage_loss_weights[t]``) and, with a mask branch, ``loss_mask``
        on the last stage's positives. Arguments as :meth:`StandardRoIHead.forward_train`."""
        if self.train_cfg is None:
            raise ValueError("CascadeRoIHead: training needs train_cfg.rcnn (one dict per stage)")
        batch_gt_instances, batch_gt_ignore, batch_metas = unpack_gt_instances(data_samples)
        img_shapes = [meta["img_shape"] for meta in batch_metas]
        stage_boxes = [p.bboxes for p in proposals]
        losses = {}
        for stage in range(self.num_stages):
            sampling_results = assign_and_sample(
                self.assigner[stage], self.sampler[stage], stage_boxes, batch_gt_instances,
                batch_gt_ignore, batch_metas,
            )  # fmt: skip
            rois = bbox2roi([res.bboxes for res in sampling_results])
            cls_score, bbox_pred = self._bbox_forward(stage, x, rois)
            head = self.bbox_head[stage]
            targets = head.get_targets(sampling_results, self.train_cfg[stage])
            weight = self.stage_loss_weights[stage]
            for name, value in head.loss(cls_score, bbox_pred, *targets).items():
                losses[f"s{stage}.{name}"] = value * weight if "loss" in name else value
            if stage == self.num_stages - 1:
                if self.with_mask:
                    losses.update(
                        self._mask_loss(
                            x, sampling_results, batch_gt_instances, self.train_cfg[stage]
                        )
                    )
                break
            # the next stage's proposals: this stage's regressed boxes, the gts added by the
            # sampler left out (the next sampler adds them again)
            boxes = self._regressed(stage, rois, cls_score, bbox_pred, img_shapes)
            counts = [res.bboxes.size(0) for res in sampling_results]
            stage_boxes = [
                image_boxes[_not_gt(res)]
                for image_boxes, res in zip(boxes.split(counts), sampling_results)
            ]
        return losses

    @torch.no_grad()
    def stage_inputs(self, x, proposals, img_metas):
        """The boxes each stage sees at test time, and every stage's outputs on them.

        Returns:
            (list over stages of the (K, 5) RoIs it classifies, list over stages of its
            (K, num_classes + 1) logits, the last stage's (K, 4 or 4 * num_classes) deltas).
            Stage ``t > 0`` gets the boxes stage ``t - 1`` regressed, clipped to the image.
        """
        img_shapes = [meta["img_shape"] for meta in img_metas]
        rois = bbox2roi([p.bboxes for p in proposals])
        stage_rois, stage_scores = [], []
        for stage in range(self.num_stages):
            cls_score, bbox_pred = self._bbox_forward(stage, x, rois)
            stage_rois.append(rois)
            stage_scores.append(cls_score)
            if stage < self.num_stages - 1:
                boxes = self._regressed(stage, rois, cls_score, bbox_pred, img_shapes)
                rois = torch.cat([rois[:, :1], boxes], 1)
        return stage_rois, stage_scores, bbox_pred

    def detect_bboxes(self, x, proposals, img_metas, rescale=False):
        """The box detections of every image (as :meth:`StandardRoIHead.detect_bboxes`): the
        class probabilities averaged over the stages, the last stage's boxes, class-wise
        NMS."""
        stage_rois, stage_scores, bbox_pred = self.stage_inputs(x, proposals, img_metas)
        mean_probs = torch.stack([s.float().softmax(1) for s in stage_scores]).mean(0)
        # the last head's get_bboxes takes logits: log-probabilities of the mean, whose
        # softmax is the mean itself (the probabilities sum to 1)
        mean_logits = mean_probs.log()
        return self._image_detections(
            self.bbox_head[-1], stage_rois[-1], mean_logits, bbox_pred,
            [p.bboxes.size(0) for p in proposals], img_metas, rescale,
        )  # fmt: skip

    @torch.no_grad()
    def simple_test(self, x, proposals, img_metas, rescale=False):
        """Detections of every image, as :meth:`StandardRoIHead.simple_test`: the class
        probabilities averaged over the stages, the last stage's boxes, class-wise NMS; masks
        of the final detections with a mask branch."""
        results, input_boxes = self.detect_bboxes(x, proposals, img_metas, rescale)
        if self.with_mask:
            self._add_masks(x, results, input_boxes, img_metas, rescale)
        return results


def _not_gt(sampling_result):
    """(P + Q,) bools: the sampled boxes of one image that are not gts added as proposals."""
    is_gt = torch.cat(
        [
            sampling_result.pos_is_gt.bool(),
            sampling_result.pos_is_gt.new_zeros(sampling_result.neg_inds.numel(), dtype=torch.bool),
        ]
    )
    return ~is_gt
