"""Sample a fixed-size, class-balanced subset of assigned candidates at random."""

import torch

from mmdet_like.models.task_modules.sampling_result import SamplingResult
from mmdet_like.registry import BBOX_SAMPLERS


def random_subset(mask, count, generator=None):
    """``count`` distinct random indices where ``mask`` (N,) is True (``count <= mask.sum()``)."""
    keys = torch.rand(mask.shape, device=mask.device, generator=generator)
    keys = keys.masked_fill(~mask, 2.0)  # valid keys are in [0, 1): they sort first
    return torch.topk(keys, count, largest=False, sorted=False).indices


@BBOX_SAMPLERS.register()
class RandomSampler:
    """Up to ``num`` candidates, about ``pos_fraction`` of them positive.

    Args:
        num: total samples per image.
        pos_fraction: largest fraction of positives; negatives fill the rest.
        neg_pos_ub: at most ``neg_pos_ub * max(1, num_pos)`` negatives (-1: no bound).
        add_gt_as_proposals: prepend the gt boxes to the candidates (as positives).
    """

    def __init__(self, num, pos_fraction, neg_pos_ub=-1, add_gt_as_proposals=True):
        if num <= 0 or not 0.0 <= pos_fraction <= 1.0:
            raise ValueError("RandomSampler: need num > 0 and 0 <= pos_fraction <= 1")
        self.num = num
        self.pos_fraction = pos_fraction
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals

    def sample(self, assign_result, bboxes, gt_bboxes, gt_labels=None, generator=None):
        """Sample candidates of one image.

        Args:
            assign_result: :class:`AssignResult` for ``bboxes`` (modified in place when gts are
                added as proposals).
            bboxes: (N, 4) candidates; gt_bboxes: (G, 4); gt_labels: (G,) optional.
            generator: optional ``torch.Generator`` for reproducible draws.

        Returns:
            :class:`SamplingResult`.
        """
        bboxes = bboxes[:, :4]
        gt_flags = bboxes.new_zeros((bboxes.size(0),), dtype=torch.uint8)
        if self.add_gt_as_proposals and gt_bboxes.numel() > 0:
            if gt_labels is None and assign_result.labels is not None:
                raise ValueError("RandomSampler: add_gt_as_proposals needs gt_labels")
            bboxes = torch.cat([gt_bboxes[:, :4].to(bboxes), bboxes])
            assign_result.add_gt_(gt_labels)
            gt_flags = torch.cat([gt_flags.new_ones(gt_bboxes.size(0)), gt_flags])

        positive = assign_result.gt_inds > 0
        negative = assign_result.gt_inds == 0
        # The one host sync of sampling: the output sizes depend on the counts.
        num_pos_avail, num_neg_avail = torch.stack([positive.sum(), negative.sum()]).tolist()
        num_pos = min(int(self.num * self.pos_fraction), num_pos_avail)
        num_neg = min(self.num - num_pos, num_neg_avail)
        if self.neg_pos_ub >= 0:
            num_neg = min(num_neg, int(self.neg_pos_ub * max(1, num_pos)))
        pos_inds = random_subset(positive, num_pos, generator)
        neg_inds = random_subset(negative, num_neg, generator)
        return SamplingResult(pos_inds, neg_inds, bboxes, gt_bboxes, assign_result, gt_flags)
