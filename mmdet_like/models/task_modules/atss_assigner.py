"""Adaptive Training Sample Selection (Zhang et al., "Bridging the Gap Between Anchor-based
and Anchor-free Detection", CVPR 2020)."""

import torch

from mmdet_like.models.task_modules.assign_result import AssignResult
from mmdet_like.models.task_modules.base_assigner import BaseAssigner, ignore_boxes_of
from mmdet_like.registry import BBOX_ASSIGNERS, IOU_CALCULATORS, build_from_cfg

# the overlap of a prior with a gt it is not a positive of (below any IoU)
NOT_POSITIVE = -1e8


@BBOX_ASSIGNERS.register()
class ATSSAssigner(BaseAssigner):
    """Positives by per-gt adaptive IoU thresholds.

    For each gt:

    1. on every pyramid level, the ``topk`` priors whose centres are nearest the gt's centre
       are its candidates (``min(topk, level size)`` of a level);
    2. its threshold is the mean plus the standard deviation (unbiased) of the candidates'
       IoUs with it;
    3. a candidate is a positive of the gt when its IoU reaches the threshold and its centre
       lies inside the gt box (more than 0.01 pixel from every side).

    A prior that is a positive of several gts goes to the one it overlaps most (the first of
    equal ones). Every other prior is negative. Priors outside ``valid_mask`` and those whose
    IoF with an ignored (crowd) box exceeds ``ignore_iof_thr`` are ignored (-1), never
    candidates and left out of the thresholds' statistics (as mmdetection's ``ATSSHead``,
    which drops anchors outside the image before assigning; a gt with one usable candidate
    gets that candidate's IoU as its threshold).

    Args:
        topk: candidates per level and gt (9 in the paper).
        ignore_iof_thr: IoF (over the prior's area) with a crowd box above which the prior
            is ignored (-1: crowd boxes are not read).
        iou_calculator: ``IOU_CALCULATORS`` config (default ``BboxOverlaps2D``).

    ``assign`` needs ``num_level_priors`` and (N, 4) prior boxes (anchors); ``img_meta`` is
    not read. The result's ``max_overlaps``: a positive's IoU with its gt, else the prior's
    best IoU with any gt (0 without gts).
    """

    def __init__(self, topk=9, ignore_iof_thr=-1.0, iou_calculator=None):
        if int(topk) < 1:
            raise ValueError(f"ATSSAssigner: topk must be at least 1, got {topk}")
        self.topk = int(topk)
        self.ignore_iof_thr = ignore_iof_thr
        self.iou_calculator = build_from_cfg(
            iou_calculator or dict(type="BboxOverlaps2D"), IOU_CALCULATORS
        )

    def assign(self, pred_instances, gt_instances, gt_instances_ignore=None, *,
               valid_mask=None, num_level_priors=None, img_meta=None):  # fmt: skip
        """Assign gts to the (N, 4) ``pred_instances.priors`` of one image, concatenated
        level after level with ``num_level_priors[l]`` priors on level ``l``
        (:meth:`BaseAssigner.assign`)."""
        priors = pred_instances.priors
        if priors.dim() != 2 or priors.size(1) < 4:
            raise ValueError(
                "ATSSAssigner: priors must be (N, 4) boxes (anchors); points have no IoU with "
                f"a gt, got shape {tuple(priors.shape)}"
            )
        if num_level_priors is None:
            raise ValueError("ATSSAssigner: assign needs num_level_priors (priors per level)")
        num_level_priors = [int(n) for n in num_level_priors]
        priors = priors[:, :4]
        num_priors = priors.size(0)
        if sum(num_level_priors) != num_priors:
            raise ValueError(
                f"ATSSAssigner: num_level_priors {num_level_priors} add up to "
                f"{sum(num_level_priors)}, not to the {num_priors} priors"
            )
        gt_bboxes = gt_instances.bboxes[:, :4].to(priors)
        gt_labels = gt_instances.get("labels")
        num_gts = gt_bboxes.size(0)

        usable = torch.ones(num_priors, dtype=torch.bool, device=priors.device)
        if valid_mask is not None:
            usable = usable & valid_mask
        ignore_boxes = ignore_boxes_of(gt_instances_ignore)
        if self.ignore_iof_thr > 0 and ignore_boxes is not None and num_priors > 0:
            iofs = self.iou_calculator(priors, ignore_boxes.to(priors), mode="iof")
            usable = usable & (iofs.max(dim=1).values <= self.ignore_iof_thr)
        gt_inds = torch.where(usable, 0, -1).long()
        if num_gts == 0 or num_priors == 0:
            labels = None if gt_labels is None else torch.full_like(gt_inds, -1)
            return AssignResult(num_gts, gt_inds, priors.new_zeros(num_priors), labels)

        overlaps = self.iou_calculator(priors, gt_bboxes)  # (N, G)
        prior_centres = (priors[:, :2] + priors[:, 2:]) / 2
        gt_centres = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) / 2
        # squared distances rank as the distances do
        distances = (prior_centres[:, None, :] - gt_centres[None, :, :]).pow(2).sum(-1)
        distances = distances.masked_fill(~usable[:, None], float("inf"))

        candidates, start = [], 0  # per level, (k_l, G) indices into all priors
        for count in num_level_priors:
            k = min(self.topk, count)
            if k > 0:
                level = distances[start : start + count]
                candidates.append(level.topk(k, dim=0, largest=False).indices + start)
            start += count
        candidates = torch.cat(candidates)  # (K, G), distinct in each column
        candidate_ious = overlaps.gather(0, candidates)
        counted = usable[candidates]
        weight = counted.to(candidate_ious.dtype)
        num_counted = weight.sum(0)
        mean = (candidate_ious * weight).sum(0) / num_counted.clamp(min=1)
        variance = ((candidate_ious - mean) ** 2 * weight).sum(0) / (num_counted - 1).clamp(min=1)
        is_pos = counted & (candidate_ious >= mean + variance.sqrt())

        # the candidate's centre inside its gt box
        centres = prior_centres[candidates]  # (K, G, 2)
        margins = torch.cat([centres - gt_bboxes[:, :2], gt_bboxes[:, 2:] - centres], dim=-1)
        is_pos = is_pos & (margins.min(dim=-1).values > 0.01)

        positive = torch.zeros_like(overlaps, dtype=torch.bool).scatter_(0, candidates, is_pos)
        best_pos_iou, best_gt = overlaps.masked_fill(~positive, NOT_POSITIVE).max(dim=1)
        assigned = positive.any(dim=1)
        gt_inds = torch.where(assigned, best_gt + 1, gt_inds)
        max_overlaps = torch.where(assigned, best_pos_iou, overlaps.max(dim=1).values)
        labels = None
        if gt_labels is not None:
            assigned_labels = gt_labels.to(gt_inds.device)[best_gt].long()
            labels = torch.where(assigned, assigned_labels, torch.full_like(assigned_labels, -1))
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
