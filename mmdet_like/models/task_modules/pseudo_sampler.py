"""Take every assigned candidate: the "sampler" of heads that train on all anchors."""

import torch

from mmdet_like.models.task_modules.sampling_result import SamplingResult
from mmdet_like.registry import BBOX_SAMPLERS


@BBOX_SAMPLERS.register()
class PseudoSampler:
    """All positives (``gt_inds > 0``) and all negatives (``gt_inds == 0``); ignored
    candidates (``gt_inds < 0``) are in neither. For heads whose loss is averaged over the
    positives (RetinaNet, FCOS-style heads): their ``loss_cls`` (e.g. focal loss) handles the
    imbalance that a random sampler would.
    """

    add_gt_as_proposals = False

    def sample(self, assign_result, bboxes, gt_bboxes, gt_labels=None, generator=None):
        """:class:`SamplingResult` of every assigned candidate of one image (the same
        arguments as :meth:`RandomSampler.sample`)."""
        bboxes = bboxes[:, :4]
        pos_inds = torch.nonzero(assign_result.gt_inds > 0, as_tuple=False).squeeze(1)
        neg_inds = torch.nonzero(assign_result.gt_inds == 0, as_tuple=False).squeeze(1)
        gt_flags = bboxes.new_zeros((bboxes.size(0),), dtype=torch.uint8)
        return SamplingResult(pos_inds, neg_inds, bboxes, gt_bboxes, assign_result, gt_flags)
