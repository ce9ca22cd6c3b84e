"""The outcome of assigning ground-truth boxes to candidates (anchors, points, proposals or
predictions)."""

from dataclasses import dataclass

import torch

from mmdet_like.structures.bbox import bbox_overlaps


@dataclass
class AssignResult:
    """Per-candidate assignment of one image.

    Attributes:
        num_gts: number of ground-truth boxes.
        gt_inds: (N,) int64: 0 negative, -1 ignored, ``i + 1`` positive for gt ``i``.
        max_overlaps: (N,) float, the overlap each assigner measured (its soft score of the
            candidate): :class:`MaxIoUAssigner` the best IoU of the prior with any gt (-1
            where invalid or a crowd's); :class:`ATSSAssigner` the IoU of a positive prior
            with its assigned gt, else the prior's best IoU with any gt; and
            :class:`HungarianAssigner` the IoU of a matched prediction's box with its gt
            (0 unmatched).
        labels: (N,) int64 label of the assigned gt, -1 where not positive (or ``None``).

    IoU-quality targets (GFL's quality focal loss, VarifocalNet's varifocal loss) measure the
    head's *predicted* box, not its prior: a head reads them with :meth:`iou_targets` from
    its decoded boxes after assignment (``max_overlaps`` already holds them for
    prediction-aware assigners).
    """

    num_gts: int
    gt_inds: torch.Tensor
    max_overlaps: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def num_candidates(self):
        return self.gt_inds.numel()

    def add_gt_(self, gt_labels):
        """Prepend the gts themselves as positives (each assigned to itself, IoU 1)."""
        gt_inds = torch.arange(1, self.num_gts + 1, dtype=torch.long, device=self.gt_inds.device)
        self.gt_inds = torch.cat([gt_inds, self.gt_inds])
        self.max_overlaps = torch.cat([self.max_overlaps.new_ones(self.num_gts), self.max_overlaps])
        if self.labels is not None:
            self.labels = torch.cat([gt_labels.to(self.labels), self.labels])

    def iou_targets(self, pred_bboxes, gt_bboxes):
        """IoU-quality soft targets of the candidates.

        Args:
            pred_bboxes: (N, 4) the boxes the head predicts at the candidates (decoded,
                ``[x1, y1, x2, y2]``); gt_bboxes: (G, 4) the image's gt boxes.

        Returns:
            (N,) detached IoU of each positive's predicted box with its assigned gt box, 0
            for negatives and ignored candidates (no host sync): the classification target
            of a GFL / VarifocalNet head at the positive's gt class.
        """
        positive = self.gt_inds > 0
        if gt_bboxes.numel() == 0:
            return pred_bboxes.new_zeros(self.num_candidates)
        assigned = gt_bboxes[:, :4][(self.gt_inds - 1).clamp(min=0)].to(pred_bboxes)
        ious = bbox_overlaps(pred_bboxes.detach()[:, :4], assigned, is_aligned=True)
        return torch.where(positive, ious, torch.zeros_like(ious))
