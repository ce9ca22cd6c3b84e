"""Proposal recall at several proposal counts and IoU thresholds."""

import numpy as np
from terminaltables import AsciiTable

from mmdet_like.evaluation.mean_ap import bbox_overlaps_np, log_text


def _matched_ious(gt, proposals):
    """Greedy one-to-one matching: repeatedly take the best (gt, proposal) pair.

    Returns:
        (m,) IoU of each gt box with its matched proposal (0 when unmatched).
    """
    out = np.zeros(len(gt))
    if len(gt) == 0 or len(proposals) == 0:
        return out
    ious = bbox_overlaps_np(gt, proposals[:, :4])
    for _ in range(min(len(gt), len(proposals))):
        g, p = np.unravel_index(ious.argmax(), ious.shape)
        if ious[g, p] < 0:
            break
        out[g] = ious[g, p]
        ious[g, :] = -1
        ious[:, p] = -1
    return out


def eval_recalls(gts, proposals, proposal_nums=(100, 300, 1000), iou_thrs=(0.5,)):
    """Recall of gt boxes by the top proposals.

    Args:
        gts: per image an (m, 4) array of gt boxes.
        proposals: per image an (k, 4|5) array, best first (sorted by score when 5 columns).

    Returns:
        (len(proposal_nums), len(iou_thrs)) float64 recalls over all gt boxes.
    """
    if len(gts) != len(proposals):
        raise ValueError(f"eval_recalls: {len(gts)} gt arrays for {len(proposals)} proposals")
    nums, thrs = list(proposal_nums), np.asarray(iou_thrs, dtype=np.float64)
    total = sum(len(g) for g in gts)
    recalls = np.zeros((len(nums), len(thrs)))
    if total == 0:
        return recalls
    for gt, props in zip(gts, proposals):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        props = np.asarray(props, dtype=np.float64)
        props = props.reshape(-1, props.shape[-1] if props.ndim == 2 else 4)
        if props.shape[1] == 5:
            props = props[np.argsort(-props[:, 4], kind="stable")]
        for i, num in enumerate(nums):
            matched = _matched_ious(gt, props[:num])
            recalls[i] += (matched[:, None] >= thrs[None]).sum(axis=0)
    return recalls / total


def print_recall_summary(recalls, proposal_nums, iou_thrs, logger=None):
    """Table of recalls: one row per proposal count, one column per IoU threshold."""
    rows = [["proposals", *[f"{t:.2f}" for t in iou_thrs]]]
    for num, row in zip(proposal_nums, recalls):
        rows.append([str(num), *[f"{v:.3f}" for v in row]])
    log_text(AsciiTable(rows).table, logger)
