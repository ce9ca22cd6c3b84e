"""One-to-one assignment of predictions to gts at the least total match cost (DETR)."""

import torch
from scipy.optimize import linear_sum_assignment

from mmdet_like.models.task_modules.assign_result import AssignResult
from mmdet_like.models.task_modules.base_assigner import BaseAssigner
from mmdet_like.registry import BBOX_ASSIGNERS, MATCH_COSTS, build_from_cfg
from mmdet_like.structures.bbox import bbox_overlaps


@BBOX_ASSIGNERS.register()
class HungarianAssigner(BaseAssigner):
    """Each gt matched to one prediction, each prediction to at most one gt, the matching
    minimising the sum of the weighted ``match_costs`` (``scipy``'s
    ``linear_sum_assignment``). Matched predictions are positives of their gt, the others
    negatives (none ignored: a one-to-one matching has no ignore band).

    Args:
        match_costs: one ``MATCH_COSTS`` config or a list of them, e.g. DINO's
            ``[dict(type="FocalLossCost", weight=2.0), dict(type="BBoxL1Cost", weight=5.0,
            box_format="cxcywh"), dict(type="IoUCost", iou_mode="giou", weight=2.0)]``.

    ``assign`` reads ``pred_instances.scores`` / ``.bboxes`` (as the costs need them),
    ``gt_instances.bboxes`` / ``.labels``, ``img_meta`` (``img_shape``, for costs on
    normalised boxes) and ``valid_mask`` (predictions outside it are matched to no gt and
    come out ignored); ``gt_instances_ignore`` and ``num_level_priors`` are not read. The
    result's ``max_overlaps``: the IoU of a matched prediction's box with its gt (0 for the
    others, and everywhere without ``pred_instances.bboxes``).

    The matching runs on the host (the (P, G) cost matrix is copied there): for
    query-based heads (a few hundred predictions), not for dense anchors.
    """

    def __init__(self, match_costs):
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not match_costs:
            raise ValueError("HungarianAssigner: give at least one match cost")
        self.match_costs = [build_from_cfg(cfg, MATCH_COSTS) for cfg in match_costs]

    def __repr__(self):
        return f"HungarianAssigner(match_costs={self.match_costs})"

    def assign(self, pred_instances, gt_instances, gt_instances_ignore=None, *,
               valid_mask=None, num_level_priors=None, img_meta=None):  # fmt: skip
        """Match the P predictions of ``pred_instances`` to the G gts
        (:meth:`BaseAssigner.assign`)."""
        gt_labels = gt_instances.labels
        device = gt_labels.device
        num_preds, num_gts = len(pred_instances), gt_labels.numel()
        pred_bboxes = pred_instances.get("bboxes")
        dtype = pred_bboxes.dtype if pred_bboxes is not None else torch.float32
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full((num_preds,), -1, dtype=torch.long, device=device)
        max_overlaps = torch.zeros(num_preds, dtype=dtype, device=device)
        if valid_mask is not None:
            gt_inds = gt_inds.masked_fill(~valid_mask.to(device), -1)
        if num_gts == 0 or num_preds == 0:
            return AssignResult(num_gts, gt_inds, max_overlaps, labels)

        with torch.no_grad():
            cost = sum(c(pred_instances, gt_instances, img_meta) for c in self.match_costs)
        cost = cost.detach().float().cpu()
        if not torch.isfinite(cost).all():
            raise ValueError(
                "HungarianAssigner: the match cost has NaN or infinite entries (predicted boxes "
                "or scores diverged?)"
            )
        rows = torch.arange(num_preds)
        if valid_mask is not None:
            rows = rows[valid_mask.cpu()]
            cost = cost[rows]
        pred_rows, gt_cols = linear_sum_assignment(cost.numpy())
        pred_inds = rows[torch.as_tensor(pred_rows, dtype=torch.long)].to(device)
        matched_gts = torch.as_tensor(gt_cols, dtype=torch.long).to(device)
        gt_inds[pred_inds] = matched_gts + 1
        labels[pred_inds] = gt_labels[matched_gts].long()
        if pred_bboxes is not None:
            max_overlaps[pred_inds] = bbox_overlaps(
                pred_bboxes.detach()[pred_inds, :4],
                gt_instances.bboxes[matched_gts, :4].to(pred_bboxes),
                is_aligned=True,
            )
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
