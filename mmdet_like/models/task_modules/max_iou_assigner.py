"""Assign each candidate box to the gt it overlaps most, by IoU thresholds."""

import torch

from mmdet_like.models.task_modules.assign_result import AssignResult
from mmdet_like.models.task_modules.base_assigner import BaseAssigner, ignore_boxes_of
from mmdet_like.registry import BBOX_ASSIGNERS, IOU_CALCULATORS, build_from_cfg


@BBOX_ASSIGNERS.register()
class MaxIoUAssigner(BaseAssigner):
    """Max-IoU assignment (Faster R-CNN).

    Each candidate gets -1 (ignored) first, then:

    1. 0 (negative) if its max IoU with all gts is in ``[0, neg_iou_thr)`` (or in the
       ``(lo, hi)`` range when ``neg_iou_thr`` is a pair);
    2. ``i + 1`` (positive) if its max IoU is ``>= pos_iou_thr``, ``i`` the best gt;
    3. with ``match_low_quality``, every gt whose best IoU is ``>= min_pos_iou`` (and > 0)
       also claims its best candidate(s): all candidates reaching that IoU when
       ``gt_max_assign_all``, else the first one. With ``low_quality_gt="claiming"``
       (mmdetection) a claimed candidate is assigned to the claiming gt, a later gt winning a
       shared candidate; with ``"best"`` (torchvision's ``Matcher``) it is assigned to its own
       best gt, as if its IoU had reached ``pos_iou_thr``.

    Candidates whose IoF with an ignored (crowd) gt box exceeds ``ignore_iof_thr`` get
    overlaps -1, so they are never negative (IoF over the candidate's area when
    ``ignore_wrt_candidates``, else over the crowd box's).
    """

    def __init__(
        self,
        pos_iou_thr,
        neg_iou_thr,
        min_pos_iou=0.0,
        gt_max_assign_all=True,
        ignore_iof_thr=-1.0,
        ignore_wrt_candidates=True,
        match_low_quality=True,
        low_quality_gt="claiming",
        iou_calculator=None,
    ):
        if isinstance(neg_iou_thr, (list, tuple)) and len(neg_iou_thr) != 2:
            raise ValueError("MaxIoUAssigner: neg_iou_thr must be a float or a (low, high) pair")
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.match_low_quality = match_low_quality
        if low_quality_gt not in ("claiming", "best"):
            raise ValueError(
                "MaxIoUAssigner: low_quality_gt must be 'claiming' or 'best', got "
                f"{low_quality_gt!r}"
            )
        self.low_quality_gt = low_quality_gt
        self.iou_calculator = build_from_cfg(
            iou_calculator or dict(type="BboxOverlaps2D"), IOU_CALCULATORS
        )

    def assign(self, pred_instances, gt_instances, gt_instances_ignore=None, *,
               valid_mask=None, num_level_priors=None, img_meta=None):  # fmt: skip
        """Assign gts to the candidates of one image (:meth:`BaseAssigner.assign`).

        Args:
            pred_instances: ``priors`` (N, 4) candidates (columns after the 4th ignored).
            gt_instances: ``bboxes`` (G, 4) (G may be 0: all candidates negative), optional
                ``labels`` (G,).
            gt_instances_ignore: optional ``bboxes`` (K, 4) crowd boxes to ignore.
            valid_mask: (N,) bools, optional: invalid candidates (e.g. anchors outside the
                image) get overlaps -1, so they are ignored and claimed by no gt.
            num_level_priors, img_meta: not read.

        Returns:
            :class:`AssignResult`; ``max_overlaps`` the best IoU of each candidate with any
            gt (-1 where invalid or ignored as crowd).
        """
        bboxes, gt_bboxes = pred_instances.priors[:, :4], gt_instances.bboxes[:, :4]
        gt_labels = gt_instances.get("labels")
        gt_bboxes_ignore = ignore_boxes_of(gt_instances_ignore)
        overlaps = self.iou_calculator(gt_bboxes, bboxes)  # (G, N)
        ignored = None if valid_mask is None else ~valid_mask
        if self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None and bboxes.numel() > 0:
            if self.ignore_wrt_candidates:
                iofs = self.iou_calculator(bboxes, gt_bboxes_ignore, mode="iof")  # (N, K)
                ignore_max = iofs.max(dim=1).values
            else:
                iofs = self.iou_calculator(gt_bboxes_ignore, bboxes, mode="iof")  # (K, N)
                ignore_max = iofs.max(dim=0).values
            crowd = ignore_max > self.ignore_iof_thr
            ignored = crowd if ignored is None else ignored | crowd
        if ignored is None:
            return self.assign_wrt_overlaps(overlaps, gt_labels)
        result = self.assign_wrt_overlaps(overlaps.masked_fill(ignored[None, :], -1.0), gt_labels)
        if gt_bboxes.size(0) == 0:  # no overlaps to mark them: ignore explicitly
            result.gt_inds = result.gt_inds.masked_fill(ignored, -1)
        return result

    def assign_wrt_overlaps(self, overlaps, gt_labels=None):
        """(G, N) overlaps -> :class:`AssignResult` (see the class docstring for the rules)."""
        num_gts, num_bboxes = overlaps.shape
        device = overlaps.device
        if num_gts == 0 or num_bboxes == 0:
            max_overlaps = overlaps.new_zeros(num_bboxes)
            gt_inds = torch.full((num_bboxes,), -1, dtype=torch.long, device=device)
            if num_gts == 0:
                gt_inds.zero_()
            labels = None
            if gt_labels is not None:
                labels = torch.full((num_bboxes,), -1, dtype=torch.long, device=device)
            return AssignResult(num_gts, gt_inds, max_overlaps, labels)

        max_overlaps, argmax_overlaps = overlaps.max(dim=0)  # (N,)
        gt_inds = torch.full((num_bboxes,), -1, dtype=torch.long, device=device)
        if isinstance(self.neg_iou_thr, (list, tuple)):
            low, high = self.neg_iou_thr
            negative = (max_overlaps >= low) & (max_overlaps < high)
        else:
            negative = (max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)
        gt_inds = gt_inds.masked_fill(negative, 0)
        positive = max_overlaps >= self.pos_iou_thr
        gt_inds = torch.where(positive, argmax_overlaps + 1, gt_inds)

        if self.match_low_quality:
            gt_max_overlaps, gt_argmax = overlaps.max(dim=1)  # (G,)
            claims = (gt_max_overlaps >= self.min_pos_iou) & (gt_max_overlaps > 0)
            if self.gt_max_assign_all:
                claimed = (overlaps == gt_max_overlaps[:, None]) & claims[:, None]
            else:
                claimed = torch.zeros_like(overlaps, dtype=torch.bool)
                claimed[torch.arange(num_gts, device=device), gt_argmax] = claims
            if self.low_quality_gt == "best":
                gt_inds = torch.where(claimed.any(dim=0), argmax_overlaps + 1, gt_inds)
            else:
                # The highest-indexed claiming gt wins a candidate: argmax returns the first
                # maximum, so search the gts in reverse (uint8 keeps the (G, N) copy small).
                last_claim = num_gts - 1 - claimed.flip(0).to(torch.uint8).argmax(dim=0)
                gt_inds = torch.where(claimed.any(dim=0), last_claim + 1, gt_inds)

        labels = None
        if gt_labels is not None:
            assigned_labels = gt_labels.to(device)[(gt_inds - 1).clamp(min=0)].long()
            labels = torch.where(gt_inds > 0, assigned_labels, torch.full_like(assigned_labels, -1))
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
