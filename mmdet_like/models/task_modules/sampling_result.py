"""The candidates a sampler picked for one image, with their targets."""

import torch


class SamplingResult:
    """Sampled positives and negatives of one image.

    Attributes:
        pos_inds, neg_inds: (P,), (Q,) indices into the candidates (gts first when they were
            added as proposals).
        pos_bboxes, neg_bboxes: (P, 4), (Q, 4).
        pos_is_gt: (P,) uint8, 1 where the positive is a gt added as a proposal.
        pos_assigned_gt_inds: (P,) 0-based gt index of each positive.
        pos_gt_bboxes: (P, 4) the gt box of each positive.
        pos_gt_labels: (P,) its label (``None`` without labels).
    """

    def __init__(self, pos_inds, neg_inds, bboxes, gt_bboxes, assign_result, gt_flags):
        self.pos_inds = pos_inds
        self.neg_inds = neg_inds
        self.pos_bboxes = bboxes[pos_inds]
        self.neg_bboxes = bboxes[neg_inds]
        self.pos_is_gt = gt_flags[pos_inds]
        self.num_gts = gt_bboxes.size(0)
        self.pos_assigned_gt_inds = assign_result.gt_inds[pos_inds] - 1
        if gt_bboxes.numel() == 0:
            self.pos_gt_bboxes = gt_bboxes.new_zeros((pos_inds.numel(), 4))
        else:
            self.pos_gt_bboxes = gt_bboxes[:, :4][self.pos_assigned_gt_inds]
        self.pos_gt_labels = None
        if assign_result.labels is not None:
            self.pos_gt_labels = assign_result.labels[pos_inds]

    @property
    def bboxes(self):
        """(P + Q, 4) positives then negatives."""
        return torch.cat([self.pos_bboxes, self.neg_bboxes])

    def __repr__(self):
        return (
            f"SamplingResult(num_pos={self.pos_inds.numel()}, num_neg={self.neg_inds.numel()}, "
            f"num_gts={self.num_gts})"
        )
